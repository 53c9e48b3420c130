"""What an arbitrary upload is, by its magic bytes; pickles refused by name and by content."""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import _pickle_refusal
from .limits import GGUF_MAGIC, PICKLE_EXTENSIONS, FormatKind

# --------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: str | Path) -> FormatKind:
    """What a file is, from its first bytes (extensions lie; blobs have none).

    ``gguf`` (magic ``GGUF``), ``safetensors`` (8-byte header length that fits the file, then ``{``),
    ``zip`` (``PK``: includes ``torch.save`` archives, which wrap a pickle), ``pickle`` (protocol 2+
    opcode ``\\x80``), else ``unknown`` (also for empty files). For a folder: ``safetensors`` if it holds
    any ``.safetensors`` file, ``pickle`` if it holds only pickle-named checkpoints, else ``unknown``.
    """
    path = Path(path)
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
        if ".safetensors" in suffixes:
            return "safetensors"
        if suffixes & PICKLE_EXTENSIONS:
            return "pickle"
        return "unknown"
    with path.open("rb") as handle:
        head = handle.read(16)
        size = handle.seek(0, 2)
    return _kind_from_head(head, size)


def _kind_from_head(head: bytes, size: int) -> FormatKind:
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack_from("<Q", head)
        if 2 <= header_len <= size - 8:
            return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def _describe_head(head: bytes) -> str:
    """The first bytes as a person can read them in an error message."""
    return repr(head[:8]) if head else "nothing (empty file)"


def _refuse_pickled_content(label: str, head: bytes, size: int, suffix: str = "") -> None:
    """Raise :class:`PickleCheckpointError` if the bytes are a pickle or a (torch.save) zip, whatever the name."""
    kind = _kind_from_head(head, size)
    if kind in ("pickle", "zip"):
        what = "a Python pickle" if kind == "pickle" else "a zip archive (the torch.save format, which wraps a pickle)"
        despite = f" despite the {suffix} name" if suffix in (".gguf", ".safetensors") else ""
        raise _pickle_refusal(label, f"the content is {what}{despite}, not GGUF or safetensors")
