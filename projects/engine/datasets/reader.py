"""Documents: one reader per format (txt, jsonl, csv, zip of them; prompt pairs), streamed."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NamedTuple

from projects.engine import archives

from .encodings import archive_kind
from .errors import ArchiveRefused, DatasetFormatError, DatasetOptionsError
from .limits import ARCHIVE_EXTENSIONS, PAIR_FIELDS, PREVIEW_CHARS
from .options import DEFAULT_LIMITS, DatasetLimits, DatasetOptions, compile_template
from .streams import _Lines, _open_text, _strip_ending

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
                f"Prompt pairs: {where} has no “{field}”; every line needs “clean”, “corrupted”, “target” and "
                "“distractor”."
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
        limits: DatasetLimits = DEFAULT_LIMITS,
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
                    f"{_where(self.name)}, {record.source} holds a document of {len(record.text):,} characters, more "
                    "than the "
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
                ) from exc
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
                    record = dict(zip(header, row, strict=False))  # short rows leave fields out
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
            raise DatasetFormatError(f"{where} line {reader.line_num} is not valid CSV ({exc}).") from exc

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
            f"{where} has several columns ({', '.join(header)}) and none is called “text”: choose the column that "
            "holds "
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
                            f"{label} is {kind}: nested archives are not accepted; unpack it and put its text files "
                            "in the zip."
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
                f"{_where(name)} contains another archive (“{member.info.filename}”): nested archives are not "
                "accepted; "
                "unpack it and put its text files in the zip."
            )
    return listing
