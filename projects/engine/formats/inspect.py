"""The entry point: a GGUF file or a safetensors folder validated into a ModelInfo."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import ModelFormatError, _pickle_refusal
from .gguf import _inspect_gguf
from .hashing import hash_tensors
from .hf_folder import _inspect_safetensors
from .limits import LEGACY_GGML_MAGICS, PICKLE_EXTENSIONS, ProgressCallback
from .records import ModelInfo
from .sniff import _describe_head, _kind_from_head, _refuse_pickled_content

# --------------------------------------------------------------------------------------------
# Entry points


def inspect_model(
    path: str | Path,
    *,
    with_hashes: bool = False,
    progress: ProgressCallback | None = None,
    original_name: str | None = None,
) -> ModelInfo:
    """Validate a model upload and inventory its tensors, reading headers only.

    ``path`` is a GGUF file, a ``.safetensors`` file (config.json beside it), or a Hugging Face folder
    (config.json, tokenizer files, ``model.safetensors`` or shards + ``model.safetensors.index.json``).
    ``original_name`` is the name the person uploaded, used for messages and extension checks when
    ``path`` is a content-addressed blob without a meaningful name. With ``with_hashes`` every tensor's
    bytes are streamed through SHA-256 (see :func:`hash_tensors`, which receives ``progress``).

    Raises :class:`ModelFormatError` (:class:`PickleCheckpointError` for pickles) when the upload is unusable.
    An architecture the pipeline cannot analyse is not an error here: see ``info.capabilities`` / ``info.require``.
    """
    path = Path(path)
    label = original_name or path.name
    if not path.exists():
        raise ModelFormatError(label, f"no such file or folder: {path}")
    if path.is_dir():
        ggufs = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
        has_safetensors = any(p.suffix.lower() == ".safetensors" for p in path.iterdir())
        if ggufs and not has_safetensors:
            if len(ggufs) > 1:
                raise ModelFormatError(
                    label,
                    f"the folder holds {len(ggufs)} GGUF files ({', '.join(p.name for p in ggufs[:3])}); upload one "
                    "GGUF file at a time",
                )
            info = _inspect_gguf(ggufs[0], ggufs[0].name)
        else:
            info = _inspect_safetensors(path, label)
            if ggufs:
                names = ", ".join(p.name for p in ggufs)
                ignored = f"GGUF files beside the safetensors weights were ignored (upload them on their own): {names}"
                info = replace(info, warnings=(*info.warnings, ignored))
    else:
        size = path.stat().st_size
        if size == 0:
            raise ModelFormatError(label, "the file is empty (0 bytes): the upload probably failed; upload it again")
        with path.open("rb") as handle:
            head = handle.read(16)
        kind = _kind_from_head(head, size)
        suffix = Path(label).suffix.lower()
        if suffix in PICKLE_EXTENSIONS:
            if kind == "gguf":
                raise ModelFormatError(
                    label, f"the file is named {suffix} but holds GGUF data: rename it to .gguf and upload it again"
                )
            if kind == "safetensors":
                raise ModelFormatError(
                    label,
                    f"the file is named {suffix} but holds safetensors data: rename it to .safetensors and upload it "
                    "in its Hugging Face folder",
                )
            if head[:4] in LEGACY_GGML_MAGICS:
                raise ModelFormatError(
                    label,
                    f"this is a legacy {LEGACY_GGML_MAGICS[head[:4]]} file from before GGUF (2023): re-convert it "
                    "with llama.cpp's convert_llama_ggml_to_gguf.py and upload the .gguf",
                )
            raise _pickle_refusal(label, f"{suffix} files are PyTorch pickle checkpoints")
        _refuse_pickled_content(label, head, size, suffix)
        if suffix == ".gguf" or (kind == "gguf" and suffix != ".safetensors"):
            info = _inspect_gguf(path, label)
        elif suffix == ".safetensors" or kind == "safetensors":
            info = _inspect_safetensors(path, label)
        else:
            legacy = head[:4] in LEGACY_GGML_MAGICS
            advice = (
                f"it is a legacy {LEGACY_GGML_MAGICS[head[:4]]} file from before GGUF: re-convert it with llama.cpp's "
                "convert_llama_ggml_to_gguf.py"
                if legacy
                else "upload a GGUF file, or a Hugging Face folder with config.json and .safetensors weights"
            )
            raise ModelFormatError(
                label, f"not a GGUF or safetensors file (it starts with {_describe_head(head)}): {advice}"
            )
    if with_hashes:
        info = hash_tensors(info, progress)
    return info
