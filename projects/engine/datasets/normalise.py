"""The normalised JSONL (id, text, source) written as documents arrive, and read back."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .errors import DatasetFormatError
from .inspection import _no_documents
from .limits import PREVIEW_DOCUMENTS, ProgressCallback
from .options import DEFAULT_LIMITS, DatasetLimits, DatasetOptions
from .reader import DatasetReader, preview_of
from .splits import _MASK, _mix, _split_threshold

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
    limits: DatasetLimits = DEFAULT_LIMITS,
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
                    f"“{reader.name}”, {document.source} holds an unpaired surrogate (a \\ud800-style escape without "
                    "its pair), "
                    "which is not valid Unicode text."
                ) from None
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
