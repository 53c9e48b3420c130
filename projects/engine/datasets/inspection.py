"""The cheap checks made while the person waits: encoding, archive listing, a preview, the fields offered."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from .errors import DatasetFormatError, DatasetOptionsError
from .limits import INSPECT_BYTES, PREVIEW_DOCUMENTS
from .options import DEFAULT_LIMITS, DatasetLimits, DatasetOptions
from .reader import DatasetReader, MissingFieldError, check_zip, preview_of

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
    limits: DatasetLimits = DEFAULT_LIMITS,
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
