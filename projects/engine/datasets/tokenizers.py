"""Token counts with a model's own tokenizer (tokenizer.json or a GGUF vocabulary)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from .errors import TokenizerError
from .limits import ProgressCallback
from .normalise import LengthHistogram

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
