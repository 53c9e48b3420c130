"""Writing a student: a Hugging Face checkpoint, a GGUF (f16) by llama.cpp's official converter, quantized copies.

Each file is written under a temporary name and renamed when whole, so a killed build or a full disk never leaves
a half-written file under the final name. Quantization uses llama.cpp's own ``llama_model_quantize`` (through
llama-cpp-python's public bindings); the types actually used are read back from the written file, since
k-quants fall back to other types on rows whose length is not a multiple of 256.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from projects.engine.conversion import hf_to_gguf

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json", "tokenizer.model")  # fmt: skip
#: llama.cpp file types by name (llama.h's ``enum llama_ftype``).
FTYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q5_0": 8, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}


class ExportError(ValueError):
    """A student that could not be written, with what to do."""


def _disk_full(path: Path, what: str) -> ExportError:
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return ExportError(f"The disk is full while writing {what} ({free / 1e9:.1f} GB free in {probe}); free some "
                       "space and build again.")  # fmt: skip


def write_hf(student: nn.Module, folder: str | Path, tokenizer_from: str | Path) -> Path:
    """The student as a Hugging Face folder (safetensors) with the teacher's tokenizer files."""
    folder, source = Path(folder), Path(tokenizer_from)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        student.save_pretrained(partial, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, partial / name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise _disk_full(folder, "the Hugging Face checkpoint") from exc
        raise
    return folder


def write_gguf(hf_dir: str | Path, out_path: str | Path, converter: str | Path, progress: object = None) -> Path:
    """An f16 GGUF of the student, by llama.cpp's official converter (``projects.engine.conversion``)."""
    out_path = Path(out_path)
    out_path.unlink(missing_ok=True)
    try:
        return hf_to_gguf(hf_dir, out_path, progress, outtype="f16", converter=converter)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(out_path, "the GGUF") from exc
        raise


@dataclass
class Quantized:
    requested: str
    path: Path
    bytes: int
    #: Tensor types in the written file and how many tensors of each.
    used: dict[str, int]

    @property
    def fallback(self) -> bool:
        """Whether some matrices got another type than the one asked for (k-quants on short rows)."""
        wanted = self.requested.split("_K")[0] + ("_K" if "_K" in self.requested else "")
        main = [t for t in self.used if t not in ("F32", "F16")]
        return any(not t.startswith(wanted) for t in main)

    def to_json(self) -> dict:
        summary = ", ".join(f"{t} × {n}" for t, n in sorted(self.used.items()))
        return {"requested": self.requested, "bytes": self.bytes, "used": self.used, "fallback": self.fallback,
                "used_summary": summary, "file": self.path.name}  # fmt: skip


def tensor_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each type a GGUF holds."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return dict(Counter(t.tensor_type.name for t in reader.tensors))


def quantize(f16_path: str | Path, out_path: str | Path, qtype: str, threads: int = 0) -> Quantized:
    """Quantize ``f16_path`` to ``qtype`` (``Q8_0``, ``Q5_K_M``, ``Q4_K_M``…) at ``out_path`` with llama.cpp."""
    import llama_cpp

    if qtype not in FTYPES:
        raise ExportError(f"Unknown quantization type {qtype}; known: {', '.join(FTYPES)}.")
    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".partial")
    partial.unlink(missing_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[qtype]
    params.nthread = threads
    code = llama_cpp.llama_model_quantize(str(f16_path).encode(), str(partial).encode(), ctypes.byref(params))
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        free = shutil.disk_usage(out_path.parent).free
        if free < Path(f16_path).stat().st_size:
            raise _disk_full(out_path, f"the {qtype} file")
        raise ExportError(f"llama.cpp could not quantize the student to {qtype} (code {code}).")
    os.replace(partial, out_path)
    return Quantized(qtype, out_path, out_path.stat().st_size, tensor_types(out_path))
