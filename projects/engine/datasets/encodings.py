"""Text encodings: guessed from the first bytes, binary files refused."""

from __future__ import annotations

import codecs

from .errors import BinaryFileError
from .limits import _BOMS, _BZIP2, _CONTROL, ARCHIVE_MAGICS

# --- Encodings -----------------------------------------------------------------------------


def encoding_label(encoding: str) -> str:
    """What people call an encoding this module returns."""
    return {
        "utf-8": "UTF-8",
        "utf-8-sig": "UTF-8 (with byte-order mark)",
        "utf-16": "UTF-16 (with byte-order mark)",
        "utf-32": "UTF-32 (with byte-order mark)",
        "cp1252": "Windows-1252 (Latin-1)",
    }.get(encoding, encoding)


def archive_kind(head: bytes) -> str | None:
    """“a zip archive”, “a gzip file”… when the bytes start like one, else None."""
    for magic, kind in ARCHIVE_MAGICS:
        if head.startswith(magic):
            return kind
    if _BZIP2.match(head):
        return "a bzip2 file"
    return None


def detect_encoding(head: bytes, where: str = "this file", *, complete: bool = False) -> str:
    """The encoding of text starting with ``head`` (up to :data:`SNIFF_BYTES` of it).

    In order: a byte-order mark (UTF-8, UTF-16, UTF-32); otherwise NUL bytes mean binary;
    then strict UTF-8; then Windows-1252, which reads Latin-1 text as well (the bytes it leaves
    undefined are C1 control codes in Latin-1, which text does not contain, so a file that
    fails Windows-1252 would not read cleanly as Latin-1 either). Text full of control
    characters is refused as binary. ``complete`` says ``head`` is the whole file (so a
    multi-byte character may not be cut at its end).
    """
    for bom, encoding, label in _BOMS:
        if head.startswith(bom):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
            except UnicodeDecodeError as exc:
                raise BinaryFileError(
                    f"{where} starts with a {label} byte-order mark but is not valid {label} "
                    f"(at byte {exc.start}: {exc.reason}). Save it as UTF-8 and upload it again."
                ) from exc
            _refuse_control_characters(text, where, encoding)
            return encoding
    nul = head.find(b"\x00")
    if nul >= 0:
        raise BinaryFileError(
            f"{where} looks like a binary file (it contains NUL bytes at byte {nul}): upload UTF-8 text, JSONL or CSV. "
            "(UTF-16 text needs a byte-order mark.)"
        )
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError as utf8_error:
        try:
            text = head.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise BinaryFileError(
                f"{where} is not UTF-8 text (byte 0x{head[utf8_error.start]:02x} at byte {utf8_error.start} is not "
                "valid UTF-8), "
                f"and it does not read cleanly as Windows-1252 or Latin-1 either (byte 0x{head[exc.start]:02x} at "
                f"byte {exc.start}). "
                "It may be binary, or in an encoding this platform does not guess: save it as UTF-8 and upload it "
                "again."
            ) from exc
        _refuse_control_characters(text, where, "cp1252")
        return "cp1252"
    _refuse_control_characters(text, where, "utf-8")
    return "utf-8"


def _refuse_control_characters(text: str, where: str, encoding: str) -> None:
    controls = _CONTROL.findall(text)
    # A stray control character happens in real text; many of them do not.
    if controls and len(controls) > max(1, len(text) // 100):
        first = _CONTROL.search(text)
        assert first is not None
        byte = len(text[: first.start()].encode(encoding if encoding != "utf-8-sig" else "utf-8", errors="replace"))
        raise BinaryFileError(
            f"{where} looks like a binary file (it is full of control characters, the first, "
            f"0x{ord(first.group()):02x}, "
            f"near byte {byte}): upload UTF-8 text, JSONL or CSV."
        )
