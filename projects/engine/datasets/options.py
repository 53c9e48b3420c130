"""How a dataset is read (DatasetOptions), the caps on it (DatasetLimits), its format from the file name, templates."""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from projects.engine import archives

from .errors import DatasetOptionsError
from .limits import _FIELD_NAME, EXTENSION_FORMATS, FORMATS, ROLES, UNITS

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
                    f"The option “{option}” is for {' and '.join(f.upper() for f in formats)} files; this dataset is "
                    f"{self.format}."
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


def detect_dataset_format(filename: str) -> str | None:
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
        ) from exc
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


#: The limits when none are given (frozen: safe to share).
DEFAULT_LIMITS = DatasetLimits()
