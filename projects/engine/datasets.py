"""Read uploaded datasets into one normalised form: a JSONL file of ``{"id", "text", "source"}``.

Inputs: plain text (``txt``: a document per line, per paragraph or per file), JSON Lines
(``jsonl``: a text field, or a template over fields such as ``"Question: {question}\\nAnswer: {answer}"``),
``csv`` (a column, or a template over columns) and ``zip`` archives of text files. The
``prompt_pairs`` role reads JSONL whose every line has the four strings of an activation-patching
pair (``clean``, ``corrupted``, ``target``, ``distractor``).

Everything streams: files are read a line at a time (a line may not exceed a bound derived from
``DatasetLimits.max_document_chars``), zip members a chunk at a time (checked and counted by
:mod:`projects.engine.archives`, the one reader of uploaded zips), and the normalised output is
written as documents arrive. Memory stays bounded whatever the upload's size.

Entry points:

* :func:`detect_format` — the format an upload's file name suggests.
* :func:`detect_encoding` — the text encoding of a file's first bytes, or :class:`BinaryFileError`.
* :func:`inspect_source` — the cheap checks made while the person waits (encoding, archive directory,
  the first documents as a preview, the fields a JSONL/CSV file offers).
* :class:`DatasetReader` — iterate the documents of an upload.
* :func:`normalise` — write the normalised JSONL and return counts, a length histogram and a preview.
* :func:`read_documents` — stream a normalised file back, optionally one split of it.
* :func:`split_of`, :func:`split_mask`, :func:`split_counts` — deterministic train/eval splits.
* :class:`Tokenizer` (protocol), :func:`load_tokenizer`, :func:`count_tokens` — token counts.

Every problem with an input raises :class:`DatasetFormatError` (a ``ValueError``) whose message names
the file and, where there is one, the line, says what is wrong and what to do about it.

No Django imports: this module is importable and testable on its own.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from projects.engine import archives

__all__ = [
    "FORMATS",
    "PAIR_FIELDS",
    "PREVIEW_CHARS",
    "PREVIEW_DOCUMENTS",
    "ROLES",
    "UNITS",
    "ArchiveRefused",
    "BinaryFileError",
    "DatasetFormatError",
    "DatasetLimits",
    "DatasetOptions",
    "DatasetOptionsError",
    "DatasetReader",
    "Document",
    "HuggingFaceTokenizer",
    "LengthHistogram",
    "NormaliseResult",
    "SourceInspection",
    "TokenCount",
    "Tokenizer",
    "TokenizerError",
    "count_tokens",
    "detect_encoding",
    "detect_format",
    "inspect_source",
    "load_gguf_tokenizer",
    "load_tokenizer",
    "normalise",
    "read_documents",
    "split_counts",
    "split_mask",
    "split_of",
]

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


# --- Errors --------------------------------------------------------------------------------


class DatasetFormatError(ValueError):
    """The file cannot become a dataset. The message says why, where, and what to do."""


class DatasetOptionsError(DatasetFormatError):
    """The options do not fit the file (a field, column or template that is not there).

    Unlike other format errors the file itself may be fine: the same upload can be used again
    with other options.
    """


class BinaryFileError(DatasetFormatError):
    """The bytes are not text in any encoding this module reads."""


class ArchiveRefused(DatasetFormatError):
    """A zip that is refused whole: too large when inflated, too many files, nested archives,
    paths that leave the archive, encryption, links (see :mod:`projects.engine.archives`)."""


class TokenizerError(ValueError):
    """No tokenizer can be had from what was given; the message says what to provide instead."""


# --- Limits and options --------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetLimits:
    """Caps that keep one upload from exhausting disk, memory or time."""

    max_uncompressed_bytes: int = 20 * 1024**3
    """Most bytes of text an upload may hold (a zip's inflated size; a plain file's size)."""
    max_files: int = 100_000
    """Most entries a zip may have (files and folders)."""
    max_document_chars: int = 1_000_000
    """Longest document, in characters; a longer line (or paragraph, or file) is refused."""

    def __post_init__(self) -> None:
        for name in ("max_uncompressed_bytes", "max_files", "max_document_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"DatasetLimits.{name} must be a positive integer, not {value!r}.")

    @property
    def archive(self) -> archives.ArchiveLimits:
        """The caps as the archive reader takes them, naming the dataset settings in its messages."""
        return archives.ArchiveLimits(
            max_uncompressed_bytes=self.max_uncompressed_bytes,
            max_members=self.max_files,
            uncompressed_setting="DATASET_MAX_UNCOMPRESSED_BYTES",
            members_setting="DATASET_MAX_FILES",
        )

    @property
    def max_record_chars(self) -> int:
        """Longest JSONL/CSV line: a document plus its other fields and JSON escapes."""
        return 8 * self.max_document_chars + 4096


@dataclass(frozen=True)
class DatasetOptions:
    """How to read an upload. Options that do not apply to the format must be left empty."""

    format: str
    """One of :data:`FORMATS`."""
    role: str = "domain"
    """One of :data:`ROLES`; ``prompt_pairs`` reads JSONL pairs instead of text."""
    text_field: str = ""
    """JSONL: the field holding the text (default ``text``)."""
    template: str = ""
    """JSONL or CSV: a text made of fields, e.g. ``"Question: {question}\\nAnswer: {answer}"``."""
    column: str = ""
    """CSV: the column holding the text (default: a column named ``text``, or the only column)."""
    delimiter: str = ""
    """CSV: the field separator (default ``,``; a tab for ``.tsv`` files)."""
    unit: str = ""
    """txt and zip: what one document is — a ``line``, a ``paragraph`` or a whole ``file``
    (default: ``line`` for txt, ``file`` for the files of a zip)."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DatasetOptionsError(f"Unknown format “{self.format}”; choose one of {', '.join(FORMATS)}.")
        if self.role not in ROLES:
            raise DatasetOptionsError(f"Unknown role “{self.role}”; choose one of {', '.join(ROLES)}.")
        applies = {
            "text_field": ("jsonl",),
            "template": ("jsonl", "csv"),
            "column": ("csv",),
            "delimiter": ("csv",),
            "unit": ("txt", "zip"),
        }
        for option, formats in applies.items():
            if getattr(self, option) and self.format not in formats:
                raise DatasetOptionsError(
                    f"The option “{option}” is for {' and '.join(f.upper() for f in formats)} files; this dataset is {self.format}."
                )
        if self.role == "prompt_pairs":
            if self.format != "jsonl":
                raise DatasetOptionsError(
                    "Prompt pairs are read from JSON Lines: one object per line with “clean”, “corrupted”, "
                    "“target” and “distractor”. Upload a .jsonl file."
                )
            if self.text_field or self.template:
                raise DatasetOptionsError(
                    "Prompt pairs take no text field or template: every line has the four fields."
                )
        if self.text_field and self.template:
            raise DatasetOptionsError("Choose either a text field or a template, not both.")
        if self.column and self.template:
            raise DatasetOptionsError("Choose either a column or a template, not both.")
        if self.template:
            compile_template(self.template)
        if self.delimiter and len(self.delimiter) != 1:
            raise DatasetOptionsError(f"The CSV delimiter must be one character, not {self.delimiter!r}.")
        if self.unit and self.unit not in UNITS:
            raise DatasetOptionsError(f"Unknown unit “{self.unit}”; choose one of {', '.join(UNITS)}.")
        if self.format in ("txt", "zip") and not self.unit:
            object.__setattr__(self, "unit", "line" if self.format == "txt" else "file")

    def as_dict(self) -> dict[str, str]:
        """The options that were set (what a dataset row stores), without format and role."""
        return {k: v for k, v in asdict(self).items() if v and k not in ("format", "role")}

    @classmethod
    def from_dict(cls, format: str, role: str, options: dict[str, Any]) -> DatasetOptions:
        known = {"text_field", "template", "column", "delimiter", "unit"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DatasetOptionsError(
                f"Unknown option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}."
            )
        values = {}
        for key, value in options.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise DatasetOptionsError(f"The option “{key}” must be text, not {type(value).__name__}.")
            values[key] = value if key in ("template", "delimiter") else value.strip()
        return cls(format=format, role=role, **values)


def detect_format(filename: str) -> str | None:
    """The format a file name suggests (``.jsonl`` → ``jsonl``…), or None."""
    return EXTENSION_FORMATS.get(PurePosixPath(filename.lower()).suffix)


def compile_template(template: str) -> list[tuple[str, str | None]]:
    """``[(literal, field or None), …]`` of a template; only plain ``{field}`` placeholders.

    ``str.format`` itself is never applied to user templates: ``{x.__class__}`` and the like
    would reach into Python objects.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DatasetOptionsError(
            f"The template is not valid ({exc}). Write a field as {{field}} and a literal brace as {{{{ or }}}}."
        )
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None))
            continue
        if not _FIELD_NAME.match(name) or spec or conversion:
            raw = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise DatasetOptionsError(
                f"“{{{raw}}}” in the template is not a plain field name: write fields as {{question}}, {{answer}}, …"
            )
        parts.append((literal, name))
    if not any(name for _, name in parts):
        raise DatasetOptionsError("The template names no field; write e.g. “Question: {question}\\nAnswer: {answer}”.")
    return parts


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
                )
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
                f"{where} is not UTF-8 text (byte 0x{head[utf8_error.start]:02x} at byte {utf8_error.start} is not valid UTF-8), "
                f"and it does not read cleanly as Windows-1252 or Latin-1 either (byte 0x{head[exc.start]:02x} at byte {exc.start}). "
                "It may be binary, or in an encoding this platform does not guess: save it as UTF-8 and upload it again."
            )
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
            f"{where} looks like a binary file (it is full of control characters, the first, 0x{ord(first.group()):02x}, "
            f"near byte {byte}): upload UTF-8 text, JSONL or CSV."
        )


# --- Streams -------------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """A raw stream that yields ``head`` and then whatever ``rest`` still holds."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Lines:
    """Decoded lines of a byte stream, each with its ending, never longer than ``limit`` characters.

    For byte-oriented encodings (UTF-8, Windows-1252) lines are cut before decoding, so a decoding
    error names its exact line and byte; UTF-16/32 go through ``io.TextIOWrapper``.
    """

    def __init__(
        self,
        binary: BinaryIO,
        encoding: str,
        where: str,
        limit: int,
        limit_name: str,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.where, self.encoding, self.limit, self.limit_name = where, encoding, limit, limit_name
        #: Asked before each line: ends the input early (a bounded look, e.g. the synchronous checks).
        self.should_stop = should_stop
        self.number = 0
        self.bytes_done = 0
        self._binary = binary
        self._text: io.TextIOWrapper | None = None
        if encoding == "utf-8-sig":
            binary.read(len(codecs.BOM_UTF8))
            self.bytes_done = len(codecs.BOM_UTF8)
            self._codec = "utf-8"
        elif encoding in _BYTE_ENCODINGS:
            self._codec = encoding
        else:
            self._codec = encoding
            self._text = io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")

    def __iter__(self) -> Iterator[str]:
        return self

    def _too_long(self) -> DatasetFormatError:
        return DatasetFormatError(
            f"{self.where}, line {self.number} is longer than {self.limit:,} characters ({self.limit_name}): "
            "split it into smaller documents."
        )

    def __next__(self) -> str:
        if self.should_stop is not None and self.should_stop():
            raise StopIteration
        if self._text is not None:
            try:
                line = self._text.readline(self.limit + 1)
            except UnicodeDecodeError as exc:
                raise DatasetFormatError(
                    f"{self.where}, near line {self.number + 1}: the text is not valid {encoding_label(self.encoding)} "
                    f"({exc.reason}). Save the file as UTF-8 and upload it again."
                )
            if not line:
                raise StopIteration
            self.number += 1
            self.bytes_done += len(line) * (2 if self.encoding == "utf-16" else 4)  # an estimate, for progress
            if len(line.rstrip("\r\n")) > self.limit:
                raise self._too_long()
            return line
        # UTF-8 uses at most 4 bytes a character: a raw line this long without a newline is too long.
        limit_bytes = 4 * self.limit + 4
        raw = self._binary.readline(limit_bytes)
        if not raw:
            raise StopIteration
        self.number += 1
        start = self.bytes_done
        self.bytes_done += len(raw)
        if len(raw) >= limit_bytes and not raw.endswith(b"\n"):
            raise self._too_long()
        try:
            line = raw.decode(self._codec)
        except UnicodeDecodeError as exc:
            detected = (
                ""
                if self.number == 1
                else f" (the first {SNIFF_BYTES // 1024} KiB read as {encoding_label(self.encoding)})"
            )
            raise DatasetFormatError(
                f"{self.where}, line {self.number} is not valid {encoding_label(self.encoding)}{detected}: byte 0x{raw[exc.start]:02x} "
                f"at byte {start + exc.start} of the file. Save the whole file as UTF-8 and upload it again."
            )
        if len(line.rstrip("\r\n")) > self.limit:
            raise self._too_long()
        if "\x00" in line:
            raise BinaryFileError(
                f"{self.where}, line {self.number} contains a NUL character: this looks like binary data, not text."
            )
        return line


def _strip_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _open_text(binary: BinaryIO, where: str, complete_size: int | None = None) -> tuple[str, BinaryIO]:
    """Sniff ``binary``'s encoding; returns it and a stream that starts again at byte 0."""
    head = binary.read(SNIFF_BYTES)
    if not head:
        return "utf-8", io.BytesIO(b"")
    encoding = detect_encoding(head, where, complete=len(head) < SNIFF_BYTES)
    return encoding, io.BufferedReader(_Prefixed(head, binary), buffer_size=256 * 1024)


# --- Documents ---------------------------------------------------------------------------


class Document(NamedTuple):
    """One document of a dataset, as the normalised file stores it."""

    id: int
    """Position in the dataset, from 0: what its split is computed from."""
    text: str
    source: str
    """Where it came from in the upload: ``line 12``, ``notes/a.txt``, ``notes/a.txt line 3``."""
    pair: dict[str, str] | None = None
    """The four fields of a prompt pair (``prompt_pairs`` datasets only)."""

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "text": self.text, "source": self.source}
        if self.pair:
            record.update(self.pair)
        return record


def preview_of(record: dict[str, Any], chars: int = PREVIEW_CHARS) -> dict[str, Any]:
    """A normalised record with its texts cut to ``chars`` characters (``truncated`` says so)."""
    out: dict[str, Any] = {"id": record["id"], "source": record.get("source", "")}
    truncated = False
    for key in ("text", *PAIR_FIELDS):
        if key in record:
            value = record[key]
            truncated |= len(value) > chars
            out[key] = value[:chars]
    out["chars"] = len(record["text"])
    out["truncated"] = truncated
    return out


def _where(name: str) -> str:
    return f"“{name}”"


def _field_text(record: dict[str, Any], name: str, where: str, what: str = "field") -> str:
    if name not in record:
        fields = ", ".join(str(k) for k in record) or "none"
        raise MissingFieldError(f"{where} has no {what} “{name}”; its {what}s are: {fields}.")
    value = record[name]
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if value is None:
        raise DatasetFormatError(f"{where}: the {what} “{name}” is null; every record needs text there.")
    raise DatasetFormatError(
        f"{where}: the {what} “{name}” is a {'list' if isinstance(value, list) else 'JSON object'}, not text; "
        "choose a field that holds text, or a template."
    )


class MissingFieldError(DatasetFormatError):
    """A record lacks the field or column the options name."""


def render_template(
    parts: list[tuple[str, str | None]], record: dict[str, Any], where: str, what: str = "field"
) -> str:
    return "".join(literal + (_field_text(record, name, where, what) if name else "") for literal, name in parts)


def validate_pair(record: dict[str, Any], where: str) -> dict[str, str]:
    """The four strings of a prompt pair, or DatasetFormatError saying what is wrong."""
    pair: dict[str, str] = {}
    for field in PAIR_FIELDS:
        if field not in record:
            raise DatasetFormatError(
                f"Prompt pairs: {where} has no “{field}”; every line needs “clean”, “corrupted”, “target” and “distractor”."
            )
        value = record[field]
        if not isinstance(value, str):
            raise DatasetFormatError(f"Prompt pairs: {where}: “{field}” is {json.dumps(value)[:60]}, not a string.")
        if not value.strip():
            raise DatasetFormatError(f"Prompt pairs: {where}: “{field}” is empty.")
        pair[field] = value
    if pair["clean"] == pair["corrupted"]:
        raise DatasetFormatError(
            f"Prompt pairs: {where}: “clean” and “corrupted” are the same prompt ({pair['clean'][:80]!r}); "
            "the corrupted prompt must differ, e.g. name another country."
        )
    if pair["target"] == pair["distractor"]:
        raise DatasetFormatError(
            f"Prompt pairs: {where}: “target” and “distractor” are the same ({pair['target']!r}); "
            "the distractor must be the answer the corrupted prompt leads to."
        )
    return pair


class _Record(NamedTuple):
    text: str
    source: str
    pair: dict[str, str] | None = None


class DatasetReader:
    """The documents of one upload, read as a stream.

    Iterate it for :class:`Document` s (ids from 0, empty texts skipped). While and after
    iterating, ``encodings`` counts the encodings met (one per file), ``skipped`` the empty
    documents left out, and :meth:`fraction` says how far through the input it is.
    """

    def __init__(
        self,
        path: str | Path,
        options: DatasetOptions,
        limits: DatasetLimits = DatasetLimits(),
        *,
        name: str | None = None,
        stop_after_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.options = options
        self.limits = limits
        self.name = name or self.path.name
        self.stop_after_bytes = stop_after_bytes
        self.encodings: Counter[str] = Counter()
        self.skipped = 0
        self.skipped_files: list[str] = []
        self.fields: list[str] = []
        self._total = max(1, self.path.stat().st_size)
        self._done = 0
        self._inflation: archives.Inflation | None = None
        self._lines: _Lines | None = None
        #: Whether iteration stopped at ``stop_after_bytes`` rather than at the end of the input.
        self.stopped_early = False

    # -- progress and facts --

    def fraction(self) -> float:
        return min(1.0, self._consumed() / self._total)

    def _consumed(self) -> int:
        """Bytes read so far: of the file, or inflated from a zip."""
        if self.options.format == "zip":
            return self._inflation.done if self._inflation is not None else 0
        return self._done + (self._lines.bytes_done if self._lines is not None else 0)

    @property
    def encoding(self) -> str:
        """The encoding (or, for a zip, the encodings) of what was read."""
        if not self.encodings:
            return ""
        if len(self.encodings) == 1:
            return next(iter(self.encodings))
        return ", ".join(f"{enc} ({n} file{'s' if n != 1 else ''})" for enc, n in self.encodings.most_common())

    def _should_stop(self) -> bool:
        """Whether ``stop_after_bytes`` were read (checked before every line and every zip member)."""
        if self.stop_after_bytes is not None and self._consumed() > self.stop_after_bytes:
            self.stopped_early = True
        return self.stopped_early

    # -- iteration --

    def __iter__(self) -> Iterator[Document]:
        count = 0
        limit = self.limits.max_document_chars
        for record in self._records():
            if not record.text.strip():
                self.skipped += 1
                continue
            if len(record.text) > limit:
                raise DatasetFormatError(
                    f"{_where(self.name)}, {record.source} holds a document of {len(record.text):,} characters, more than the "
                    f"limit of {limit:,} (DATASET_MAX_DOCUMENT_CHARS): split it into smaller documents."
                )
            if "\x00" in record.text:
                raise DatasetFormatError(
                    f"{_where(self.name)}, {record.source} contains a NUL character (\\u0000), which text may not hold."
                )
            yield Document(count, record.text, record.source, record.pair)
            count += 1

    def _records(self) -> Iterator[_Record]:
        if self.options.format == "zip":
            yield from self._zip_records()
            return
        size = self.path.stat().st_size
        if size > self.limits.max_uncompressed_bytes:
            raise DatasetFormatError(
                f"{_where(self.name)} is {size:,} bytes, more than the limit of {self.limits.max_uncompressed_bytes:,} "
                "bytes of text per dataset (DATASET_MAX_UNCOMPRESSED_BYTES)."
            )
        with open(self.path, "rb") as handle:
            kind = archive_kind(handle.read(8))
            handle.seek(0)
            if kind and kind.endswith("zip archive"):
                raise DatasetOptionsError(
                    f"{_where(self.name)} is {kind}, not {self.options.format.upper()} text: choose the format “zip”."
                )
            if kind:
                raise DatasetFormatError(
                    f"{_where(self.name)} is {kind}, not text: unpack it and upload the text inside."
                )
            encoding, binary = _open_text(handle, _where(self.name))
            self.encodings[encoding] += 1
            yield from self._text_records(binary, encoding, _where(self.name), source_prefix="")

    def _text_records(self, binary: BinaryIO, encoding: str, where: str, source_prefix: str) -> Iterator[_Record]:
        fmt = self.options.format
        if fmt in ("txt", "zip"):
            lines = _Lines(
                binary, encoding, where, self.limits.max_document_chars, "DATASET_MAX_DOCUMENT_CHARS", self._should_stop
            )
        else:
            lines = _Lines(
                binary,
                encoding,
                where,
                self.limits.max_record_chars,
                "no record may exceed 8 × DATASET_MAX_DOCUMENT_CHARS",
                self._should_stop,
            )
        self._lines = lines
        try:
            if fmt == "jsonl":
                yield from self._jsonl_records(lines, where)
            elif fmt == "csv":
                yield from self._csv_records(lines, where)
            else:
                yield from self._unit_records(lines, where, source_prefix)
        finally:
            if self.options.format != "zip":
                self._done += lines.bytes_done
            self._lines = None

    def _unit_records(self, lines: _Lines, where: str, prefix: str) -> Iterator[_Record]:
        unit = self.options.unit
        limit = self.limits.max_document_chars
        label = (prefix + " ") if prefix else ""
        if unit == "line":
            for line in lines:
                yield _Record(_strip_ending(line), f"{label}line {lines.number}")
            return
        parts: list[str] = []
        length = 0
        start = 1
        for line in lines:
            content = _strip_ending(line)
            if unit == "paragraph" and not content.strip():
                if parts:
                    yield _Record("\n".join(parts), f"{label}paragraph at line {start}")
                parts, length = [], 0
                continue
            if not parts:
                start = lines.number
            parts.append(content)
            length += len(content) + 1
            if length - 1 > limit:
                what = f"the paragraph starting at line {start}" if unit == "paragraph" else "the file"
                raise DatasetFormatError(
                    f"{where}: {what} is longer than {limit:,} characters (DATASET_MAX_DOCUMENT_CHARS); "
                    "choose the unit “line” or “paragraph”, or split it."
                )
        if parts:
            source = f"{label}paragraph at line {start}" if unit == "paragraph" else (prefix or "file")
            yield _Record("\n".join(parts), source)

    def _jsonl_records(self, lines: _Lines, where: str) -> Iterator[_Record]:
        options = self.options
        parts = compile_template(options.template) if options.template else None
        field = options.text_field or "text"
        for line in lines:
            content = line.strip()
            if not content:
                continue
            at = f"{where} line {lines.number}"
            try:
                record = json.loads(content)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(
                    f"{at} is not valid JSON ({exc.msg} at column {exc.colno}). Each line must be one JSON object."
                )
            if not isinstance(record, dict):
                raise DatasetFormatError(
                    f"{at} is a JSON {type(record).__name__}, not an object: each line must be one JSON object."
                )
            if not self.fields:
                self.fields = [str(k) for k in record]
            source = f"line {lines.number}"
            if options.role == "prompt_pairs":
                pair = validate_pair(record, f"line {lines.number}")
                yield _Record(pair["clean"], source, pair)
            elif parts is not None:
                yield _Record(render_template(parts, record, at), source)
            else:
                yield _Record(_field_text(record, field, at), source)

    def _csv_records(self, lines: _Lines, where: str) -> Iterator[_Record]:
        options = self.options
        delimiter = options.delimiter or ("\t" if self.name.lower().endswith(".tsv") else ",")
        # The csv module's own cap on a field (global to the process): a record's bound.
        csv.field_size_limit(max(csv.field_size_limit(), self.limits.max_record_chars))
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        parts = compile_template(options.template) if options.template else None
        index: int | None = None
        try:
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [cell.strip() for cell in row]
                    self.fields = header
                    if parts is None:
                        index = self._csv_column(header, where)
                    continue
                at = f"{where} line {reader.line_num}"
                source = f"line {reader.line_num}"
                if parts is not None:
                    record = dict(zip(header, row))
                    yield _Record(render_template(parts, record, at, what="column"), source)
                else:
                    assert index is not None
                    if index >= len(row):
                        raise DatasetFormatError(
                            f"{at} has {len(row)} field{'s' if len(row) != 1 else ''}, so no “{header[index]}” "
                            f"(column {index + 1} of the header)."
                        )
                    yield _Record(row[index], source)
        except csv.Error as exc:
            raise DatasetFormatError(f"{where} line {reader.line_num} is not valid CSV ({exc}).")

    def _csv_column(self, header: list[str], where: str) -> int:
        wanted = self.options.column
        if wanted:
            if wanted not in header:
                raise MissingFieldError(f"{where} has no column “{wanted}”; its columns are: {', '.join(header)}.")
            return header.index(wanted)
        lowered = [h.lower() for h in header]
        if "text" in lowered:
            return lowered.index("text")
        if len(header) == 1:
            return 0
        raise MissingFieldError(
            f"{where} has several columns ({', '.join(header)}) and none is called “text”: choose the column that holds "
            "the text, or a template."
        )

    # -- zip --

    def _zip_records(self) -> Iterator[_Record]:
        where = _where(self.name)
        listing = check_zip(self.path, self.limits, self.name)
        self._total = max(1, listing.declared_bytes)
        self.skipped_files = listing.skipped
        self._inflation = archives.Inflation(self.limits.archive, self.name, listing.declared_bytes)
        try:
            with closing(archives.read_members(self.path, listing.members, self._inflation)) as members:
                for member, raw in members:
                    if self._should_stop():
                        return
                    label = f"“{member.info.filename}” in {where}"
                    binary = io.BufferedReader(raw, buffer_size=256 * 1024)
                    kind = archive_kind(binary.peek(16)[:16])
                    if kind:
                        raise ArchiveRefused(
                            f"{label} is {kind}: nested archives are not accepted; unpack it and put its text files in the zip."
                        )
                    encoding, text_binary = _open_text(binary, label)
                    self.encodings[encoding] += 1
                    yield from self._text_records(text_binary, encoding, label, source_prefix=member.info.filename)
                    if self.stopped_early:
                        return
        except archives.ArchiveError as exc:
            raise _dataset_archive_error(exc) from None


def _dataset_archive_error(exc: archives.ArchiveError) -> DatasetFormatError:
    """The archive module's refusal, as the dataset error the callers handle."""
    if isinstance(exc, archives.NotAZipError):
        return DatasetOptionsError(f"{exc}; choose its real format.")
    if isinstance(exc, archives.ArchiveRefused):
        return ArchiveRefused(str(exc))
    return DatasetFormatError(str(exc))


def check_zip(path: str | Path, limits: DatasetLimits, name: str | None = None) -> archives.ArchiveListing:
    """Read a zip's directory and refuse what must not be inflated (:func:`archives.list_zip`, with the
    dataset caps), and nested archives; returns its text files and what was skipped."""
    path = Path(path)
    name = name or path.name
    try:
        listing = archives.list_zip(path, limits.archive, name)
    except archives.ArchiveError as exc:
        raise _dataset_archive_error(exc) from None
    for member in listing.members:
        if PurePosixPath(member.path.lower()).suffix in ARCHIVE_EXTENSIONS:
            raise ArchiveRefused(
                f"{_where(name)} contains another archive (“{member.info.filename}”): nested archives are not accepted; "
                "unpack it and put its text files in the zip."
            )
    return listing


# --- Inspection (cheap, synchronous) ----------------------------------------------------------


class SourceInspection(NamedTuple):
    encoding: str
    """Encoding of the file (for a zip, of the files previewed)."""
    preview: list[dict[str, Any]]
    """The first documents, cut to :data:`PREVIEW_CHARS` characters (see :func:`preview_of`)."""
    fields: list[str]
    """JSONL: the first record's fields; CSV: the header's columns."""
    files: int
    """Files a zip holds (1 otherwise)."""


def inspect_source(
    path: str | Path,
    options: DatasetOptions,
    limits: DatasetLimits = DatasetLimits(),
    *,
    name: str | None = None,
    documents: int = PREVIEW_DOCUMENTS,
) -> SourceInspection:
    """What can be checked while the person waits: the encoding (binary refused), a zip's directory
    (bombs, nesting, paths), and the first ``documents`` documents (options that do not fit the
    file raise :class:`DatasetOptionsError`). The rest is left to :func:`normalise` in a job.
    """
    path = Path(path)
    files = 1
    if options.format == "zip":
        files = len(check_zip(path, limits, name or path.name).members)
        if not files:
            raise DatasetFormatError(f"“{name or path.name}” holds no files: there is nothing to read.")
    reader = DatasetReader(path, options, limits, name=name, stop_after_bytes=INSPECT_BYTES)
    preview: list[dict[str, Any]] = []
    try:
        for document in reader:
            preview.append(preview_of(document.as_json()))
            if len(preview) >= documents:
                break
    except MissingFieldError as exc:
        raise DatasetOptionsError(str(exc)) from exc
    if not preview and not reader.stopped_early:  # the whole input was read: it is empty
        raise DatasetFormatError(_no_documents(reader.name, reader.skipped))
    return SourceInspection(reader.encoding, preview, reader.fields, files)


def _no_documents(name: str, skipped: int) -> str:
    left_out = f" ({skipped:,} empty document{'s' if skipped != 1 else ''} left out)" if skipped else ""
    return (
        f"“{name}” holds no documents{left_out}: there is nothing to learn from. Check the options "
        "(text field, column, template, unit) or upload a file with text in it."
    )


# --- Normalisation --------------------------------------------------------------------------


class LengthHistogram:
    """Counts of lengths in power-of-two buckets — 1, 2–3, 4–7, 8–15, … — with count, total, min, max."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max = 0

    def add(self, length: int) -> None:
        self.buckets[length.bit_length()] += 1
        self.count += 1
        self.total += length
        if self.min is None or length < self.min:
            self.min = length
        if length > self.max:
            self.max = length

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"count", "total", "min", "max", "mean", "buckets": [{"lo", "hi", "count"}]}``.

        Buckets run without gaps from the shortest to the longest length, empty ones included.
        """
        buckets = []
        if self.count:
            for k in range(min(self.buckets), max(self.buckets) + 1):
                lo, hi = (0, 0) if k == 0 else (1 << (k - 1), (1 << k) - 1)
                buckets.append({"lo": lo, "hi": hi, "count": self.buckets.get(k, 0)})
        return {
            "count": self.count,
            "total": self.total,
            "min": self.min or 0,
            "max": self.max,
            "mean": round(self.total / self.count, 1) if self.count else 0,
            "buckets": buckets,
        }


_JSON_LINE = json.JSONEncoder(ensure_ascii=False)


class NormaliseResult(NamedTuple):
    documents: int
    characters: int
    skipped: int
    """Empty documents left out."""
    encoding: str
    lengths: dict[str, Any]
    """:meth:`LengthHistogram.as_dict` of the documents' lengths in characters."""
    preview: list[dict[str, Any]]
    files: int
    """Files read (a zip's text files; 1 otherwise)."""


def normalise(
    path: str | Path,
    options: DatasetOptions,
    out_path: str | Path,
    limits: DatasetLimits = DatasetLimits(),
    *,
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> NormaliseResult:
    """Read every document of ``path`` and write them to ``out_path`` as JSONL (one
    :meth:`Document.as_json` per line, UTF-8). Refuses a dataset with no documents.
    """
    reader = DatasetReader(path, options, limits, name=name)
    lengths = LengthHistogram()
    preview: list[dict[str, Any]] = []
    encode = _JSON_LINE.encode  # one encoder for every line (json.dumps builds one per call)
    with open(out_path, "w", encoding="utf-8", newline="\n") as out:
        for document in reader:
            record = document.as_json()
            try:
                out.write(encode(record) + "\n")
            except UnicodeEncodeError:
                raise DatasetFormatError(
                    f"“{reader.name}”, {document.source} holds an unpaired surrogate (a \\ud800-style escape without its pair), "
                    "which is not valid Unicode text."
                )
            lengths.add(len(document.text))
            if len(preview) < PREVIEW_DOCUMENTS:
                preview.append(preview_of(record))
            if progress is not None and lengths.count % 256 == 0:
                progress(reader.fraction(), lengths.count)
    if not lengths.count:
        raise DatasetFormatError(_no_documents(reader.name, reader.skipped))
    if progress is not None:
        progress(1.0, lengths.count)
    files = sum(reader.encodings.values()) or 1
    return NormaliseResult(
        lengths.count, lengths.total, reader.skipped, reader.encoding, lengths.as_dict(), preview, files
    )


def read_documents(
    path: str | Path, *, split: Literal["train", "eval"] | None = None, seed: int = 0, ratio: float = 0.9
) -> Iterator[dict[str, Any]]:
    """Stream the records of a normalised file, optionally only those of one split."""
    if split not in (None, "train", "eval"):
        raise ValueError(f"split must be 'train', 'eval' or None, not {split!r}")
    threshold = _split_threshold(ratio) if split else 0
    base = _mix(seed & _MASK) if split else 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if split is not None:
                in_train = _mix((base + record["id"]) & _MASK) < threshold
                if in_train != (split == "train"):
                    continue
            yield record


# --- Splits ---------------------------------------------------------------------------------

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a bijection on 64-bit integers that scatters neighbours."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def validate_split(ratio: float, seed: int) -> None:
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f"The train ratio must be between 0 and 1 (exclusive), e.g. 0.9; got {ratio!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"The seed must be a whole number from 0 to 2^63 − 1; got {seed!r}.")


def _split_threshold(ratio: float) -> int:
    return min(_MASK, int(ratio * 2.0**64))


def split_of(seed: int, ratio: float, doc_id: int) -> Literal["train", "eval"]:
    """The split of document ``doc_id``: a pure function of (seed, ratio, id)."""
    return "train" if _mix((_mix(seed & _MASK) + doc_id) & _MASK) < _split_threshold(ratio) else "eval"


def split_mask(seed: int, ratio: float, count: int, start: int = 0) -> np.ndarray:
    """``split_of(...) == "train"`` for ids ``start … start+count−1``, vectorised. # (count,) bool"""
    with np.errstate(over="ignore"):
        x = np.uint64(_mix(seed & _MASK)) + np.arange(start, start + count, dtype=np.uint64)
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z < np.uint64(_split_threshold(ratio))


def split_counts(seed: int, ratio: float, count: int, chunk: int = 1 << 20) -> tuple[int, int]:
    """(train, eval) document counts of a dataset of ``count`` documents."""
    validate_split(ratio, seed)
    train = 0
    for start in range(0, count, chunk):
        train += int(split_mask(seed, ratio, min(chunk, count - start), start).sum())
    return train, count - train


# --- Tokenizers -----------------------------------------------------------------------------


@runtime_checkable
class Tokenizer(Protocol):
    """Counts tokens the way one model does: :class:`HuggingFaceTokenizer` (tokenizer.json) or
    :class:`LlamaCppTokenizer` (a GGUF file's vocabulary)."""

    description: str
    """What people read, e.g. “tokenizer.json (BPE, 49,152 tokens)”."""

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, without special tokens (BOS/EOS) added."""
        ...


class HuggingFaceTokenizer:
    """A Hugging Face ``tokenizer.json`` loaded with the ``tokenizers`` library (JSON only, no code)."""

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer as _HFTokenizer
        except ImportError as exc:  # pragma: no cover - the package is a requirement
            raise TokenizerError(
                "The `tokenizers` package is not installed on this worker; install the pinned requirements."
            ) from exc
        path = Path(path)
        try:
            self._tokenizer = _HFTokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions for bad files
            raise TokenizerError(
                f"“{path.name}” is not a Hugging Face tokenizer.json this platform can read ({exc}). "
                "Use the tokenizer.json that comes with the model."
            ) from exc
        kind = type(self._tokenizer.model).__name__
        self.description = f"tokenizer.json ({kind}, {self._tokenizer.get_vocab_size():,} tokens)"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]


class LlamaCppTokenizer:
    """The vocabulary stored in a GGUF file, tokenized by llama.cpp (only the vocabulary is loaded)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - the package is a requirement
            raise TokenizerError(
                "llama-cpp-python is not installed on this worker; install the pinned requirements."
            ) from exc
        try:
            self._llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
        except Exception as exc:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError for unreadable files
            raise TokenizerError(f"llama.cpp could not read the vocabulary of “{path.name}” ({exc}).") from exc
        self.description = f"GGUF vocabulary ({self._llama.n_vocab():,} tokens, llama.cpp)"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)) for text in texts]


def load_gguf_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer stored in a GGUF file's vocabulary, through llama.cpp."""
    return LlamaCppTokenizer(path)


def load_tokenizer(path: str | Path, kind: Literal["tokenizer.json", "gguf"]) -> Tokenizer:
    """A :class:`Tokenizer` from a ``tokenizer.json`` or a GGUF file."""
    if kind == "tokenizer.json":
        return HuggingFaceTokenizer(path)
    if kind == "gguf":
        return load_gguf_tokenizer(path)
    raise TokenizerError(f"Unknown tokenizer kind {kind!r}; expected 'tokenizer.json' or 'gguf'.")


class TokenCount(NamedTuple):
    documents: int
    tokens: int
    lengths: dict[str, Any]
    """:meth:`LengthHistogram.as_dict` of the documents' lengths in tokens."""


def count_tokens(
    documents_path: str | Path, tokenizer: Tokenizer, *, batch_size: int = 256, progress: ProgressCallback | None = None
) -> TokenCount:
    """Count the tokens of every document of a normalised file, in batches (bounded memory)."""
    path = Path(documents_path)
    total = max(1, path.stat().st_size)
    lengths = LengthHistogram()
    batch: list[str] = []

    def flush() -> None:
        for n in tokenizer.count(batch):
            lengths.add(n)
        batch.clear()

    with open(path, encoding="utf-8") as handle:
        done = 0
        for line in handle:
            done += len(line.encode("utf-8"))
            batch.append(json.loads(line)["text"])
            if len(batch) >= batch_size:
                flush()
                if progress is not None:
                    progress(done / total, lengths.count)
        if batch:
            flush()
    if progress is not None:
        progress(1.0, lengths.count)
    return TokenCount(lengths.count, lengths.total, lengths.as_dict())
