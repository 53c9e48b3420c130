"""Constants of dataset reading: formats, roles, units, how much is read while a person waits, archive and
encoding signatures."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

FORMATS: tuple[str, ...] = ("txt", "jsonl", "csv", "zip")
ROLES: tuple[str, ...] = ("domain", "control", "prompt_pairs")
#: How a text file is cut into documents.
UNITS: tuple[str, ...] = ("line", "paragraph", "file")
PAIR_FIELDS: tuple[str, ...] = ("clean", "corrupted", "target", "distractor")

#: How much of a file the encoding is guessed from.
SNIFF_BYTES = 64 * 1024
PREVIEW_DOCUMENTS = 20
PREVIEW_CHARS = 500
#: How much :func:`inspect_source` reads at most while the person waits.
INSPECT_BYTES = 16 * 1024 * 1024

EXTENSION_FORMATS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".zip": "zip",
}
#: Names inside a zip that are themselves archives (refused: no nesting).
ARCHIVE_EXTENSIONS = frozenset(
    {
        ".zip",
        ".jar",
        ".whl",
        ".tar",
        ".tgz",
        ".gz",
        ".bz2",
        ".tbz2",
        ".xz",
        ".txz",
        ".zst",
        ".7z",
        ".rar",
        ".lz4",
    }
)
#: Magic numbers of archives and compressed files, and what people call them.
ARCHIVE_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an (empty) zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard file"),
    (b"Rar!\x1a\x07", "a RAR archive"),
)
_BZIP2 = re.compile(rb"^BZh[1-9]1AY&SY")

# Byte-order marks, longest first: a UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
#: Encodings whose newline is the single byte 0x0A (lines can be cut before decoding).
_BYTE_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "cp1252"})
# C0 control characters other than tab, newline, vertical tab, form feed, carriage return; and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ProgressCallback = Callable[[float, int], None]
"""``progress(fraction_done, documents_so_far)``."""
