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

* :func:`detect_dataset_format` — the format an upload's file name suggests.
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

One module per concern: ``limits``, ``errors``, ``options``, ``encodings``, ``streams``, ``reader``,
``inspection``, ``normalise``, ``splits``, ``tokenizers``.

No Django imports: the package is importable and testable on its own.
"""

from .encodings import detect_encoding
from .errors import ArchiveRefused, BinaryFileError, DatasetFormatError, DatasetOptionsError, TokenizerError
from .inspection import SourceInspection, inspect_source
from .limits import FORMATS, PAIR_FIELDS, PREVIEW_CHARS, PREVIEW_DOCUMENTS, ROLES, UNITS
from .normalise import LengthHistogram, NormaliseResult, normalise, read_documents
from .options import DatasetLimits, DatasetOptions, detect_dataset_format
from .reader import DatasetReader, Document, MissingFieldError, validate_pair
from .splits import split_counts, split_mask, split_of, validate_split
from .tokenizers import (
    HuggingFaceTokenizer,
    LlamaCppTokenizer,
    TokenCount,
    Tokenizer,
    count_tokens,
    load_gguf_tokenizer,
    load_tokenizer,
)

__all__ = [
    "ArchiveRefused",
    "BinaryFileError",
    "DatasetFormatError",
    "DatasetLimits",
    "DatasetOptions",
    "DatasetOptionsError",
    "DatasetReader",
    "Document",
    "FORMATS",
    "HuggingFaceTokenizer",
    "LengthHistogram",
    "LlamaCppTokenizer",
    "MissingFieldError",
    "NormaliseResult",
    "PAIR_FIELDS",
    "PREVIEW_CHARS",
    "PREVIEW_DOCUMENTS",
    "ROLES",
    "SourceInspection",
    "TokenCount",
    "Tokenizer",
    "TokenizerError",
    "UNITS",
    "count_tokens",
    "detect_dataset_format",
    "detect_encoding",
    "inspect_source",
    "load_gguf_tokenizer",
    "load_tokenizer",
    "normalise",
    "read_documents",
    "split_counts",
    "split_mask",
    "split_of",
    "validate_pair",
    "validate_split",
]
