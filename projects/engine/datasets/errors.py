"""The errors of datasets: each message names the file and, where there is one, the line, and says what to do."""

from __future__ import annotations

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
