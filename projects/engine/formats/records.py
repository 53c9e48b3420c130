"""What an inspection returns: one entry per tensor, the capabilities per phase, the model's facts."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from projects.engine.tensor_names import COMPONENTS

from .errors import UnsupportedModelError
from .limits import PHASES

# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a model file: where it is, what it is, and (once hashed) its content hash."""

    name: str
    """Name as stored in the file (``blk.0.attn_q.weight`` or ``model.layers.0.self_attn.q_proj.weight``)."""
    file: str
    """File holding the tensor, relative to the model's folder (the shard name for sharded safetensors)."""
    layer: int | None
    """Transformer block index, or None for tensors outside the blocks."""
    component: str
    """One of :data:`COMPONENTS` (``attn_q`` … ``output_head``, ``other``)."""
    shape: tuple[int, ...]
    """Dimensions in PyTorch order (GGUF stores them reversed; they are converted on read)."""
    dtype: str
    """Storage type: a safetensors dtype (``BF16``) or a GGML type name (``F32``, ``Q8_0``, ``Q4_K``)."""
    n_params: int
    """Number of logical elements (for quantised tensors: weights, not bytes)."""
    offset: int
    """Absolute byte offset of the tensor's data in ``file``."""
    n_bytes: int
    """Length of the tensor's data in bytes."""
    sha256: str | None = None
    """Hex SHA-256 of exactly ``n_bytes`` bytes at ``offset``; None until :func:`hash_tensors` ran."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("tensor name must not be empty")
        if self.component not in COMPONENTS:
            raise ValueError(f"component {self.component!r} of {self.name!r} is not one of {COMPONENTS}")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"layer of {self.name!r} must be >= 0, got {self.layer}")
        if any(d < 0 for d in self.shape):
            raise ValueError(f"shape of {self.name!r} has a negative dimension: {self.shape}")
        if self.n_params != math.prod(self.shape):
            raise ValueError(
                f"n_params of {self.name!r} is {self.n_params}, but its shape {self.shape} holds "
                f"{math.prod(self.shape)}"
            )
        if self.offset < 0 or self.n_bytes < 0:
            raise ValueError(f"offset/n_bytes of {self.name!r} must be >= 0, got {self.offset}/{self.n_bytes}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"sha256 of {self.name!r} must be 64 lowercase hex digits, got {self.sha256!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "layer": self.layer,
            "component": self.component,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "n_params": self.n_params,
            "offset": self.offset,
            "n_bytes": self.n_bytes,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorEntry:
        return cls(**{**data, "shape": tuple(data["shape"])})


@dataclass(frozen=True)
class Capabilities:
    """Which platform phases a model can go through, and why not where it cannot."""

    chat: bool
    """Runnable for chat: needs a GGUF of an architecture llama.cpp knows, with a tokenizer."""
    analysis: bool
    """Transcoder/circuit analysis: needs a complete llama-family model."""
    distillation: bool
    """Student builds: same requirement as analysis (pruning works on llama blocks)."""
    reasons: dict[str, str] = field(default_factory=dict)
    """For every phase that is False, a sentence saying why and what to upload instead."""

    def __post_init__(self) -> None:
        unknown = set(self.reasons) - set(PHASES)
        if unknown:
            raise ValueError(f"reasons given for unknown phases {sorted(unknown)}; phases are {PHASES}")
        for phase in PHASES:
            if not getattr(self, phase) and not self.reasons.get(phase):
                raise ValueError(f"phase {phase!r} is not possible but no reason was given")

    def allows(self, phase: str) -> bool:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases are {PHASES}")
        return bool(getattr(self, phase))

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat": self.chat,
            "analysis": self.analysis,
            "distillation": self.distillation,
            "reasons": dict(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capabilities:
        return cls(
            chat=data["chat"],
            analysis=data["analysis"],
            distillation=data["distillation"],
            reasons=dict(data["reasons"]),
        )


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about an uploaded model without loading its weights."""

    format: Literal["gguf", "safetensors"]
    """Container format."""
    path: str
    """What was inspected: the GGUF/safetensors file or the Hugging Face folder."""
    files: tuple[str, ...]
    """Data files, relative to :attr:`folder` (one for GGUF, the shards for safetensors)."""
    file_size: int
    """Total size of :attr:`files` in bytes."""
    architecture: str | None
    """GGUF ``general.architecture`` (``llama``), or config.json's first ``architectures`` (``LlamaForCausalLM``)."""
    model_type: str | None
    """GGUF architecture again, or config.json's ``model_type`` (``llama``)."""
    name: str | None
    """Human name: GGUF ``general.name``, or config.json's ``_name_or_path``, or the folder name."""
    block_count: int | None
    """Number of transformer blocks (layers)."""
    embedding_length: int | None
    """Residual stream width (d_model / hidden_size)."""
    head_count: int | None
    """Attention heads per layer (the largest, if the file varies it by layer)."""
    head_count_kv: int | None
    """Key/value heads per layer (< head_count for grouped-query attention)."""
    feed_forward_length: int | None
    """MLP hidden width (intermediate_size)."""
    context_length: int | None
    """Training context length in tokens."""
    vocab_size: int | None
    """Tokenizer vocabulary size."""
    chat_template: str | None
    """Jinja chat template shipped with the model, if any."""
    file_type: str | None
    """GGUF ``general.file_type`` as a name (``MOSTLY_Q4_1``); config.json's ``torch_dtype`` for safetensors."""
    gguf_version: int | None
    """GGUF container version (2 or 3); None for safetensors."""
    capabilities: Capabilities
    """Which phases this model supports, with reasons."""
    tensors: tuple[TensorEntry, ...]
    """One record per tensor: GGUF in header order; safetensors by offset, shard after shard."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Format metadata, JSON-safe: GGUF key/values (long arrays summarised), or config.json and ``__metadata__``."""
    warnings: tuple[str, ...] = ()
    """Things a person should know that did not stop the upload (ignored files, inconsistent totals)."""

    def __post_init__(self) -> None:
        if self.format not in ("gguf", "safetensors"):
            raise ValueError(f"format must be 'gguf' or 'safetensors', got {self.format!r}")
        names = [t.name for t in self.tensors]
        if len(names) != len(set(names)):
            duplicates = sorted(n for n, c in Counter(names).items() if c > 1)
            raise ValueError(f"duplicate tensor names in inventory: {duplicates[:5]}")
        stray = {t.file for t in self.tensors} - set(self.files)
        if stray:
            raise ValueError(f"tensors refer to files not listed in files: {sorted(stray)}")

    @property
    def n_params(self) -> int:
        """Total parameter count (sum over tensors)."""
        return sum(t.n_params for t in self.tensors)

    @property
    def n_bytes(self) -> int:
        """Total tensor data in bytes (excludes headers and padding)."""
        return sum(t.n_bytes for t in self.tensors)

    @property
    def quant_types(self) -> dict[str, int]:
        """Number of tensors per storage type, e.g. ``{"F32": 5, "Q8_0": 14}``."""
        return dict(Counter(t.dtype for t in self.tensors))

    @property
    def hashed(self) -> bool:
        """Whether every tensor has its SHA-256 (needed by :func:`compare_models`)."""
        return all(t.sha256 is not None for t in self.tensors)

    @property
    def folder(self) -> Path:
        """The folder :attr:`files` are relative to (the inspected folder, or the inspected file's folder)."""
        path = Path(self.path)
        return path.parent if path.name in self.files else path

    def layers(self) -> dict[int, list[TensorEntry]]:
        """Tensors grouped by block index (tensors outside the blocks are left out)."""
        grouped: dict[int, list[TensorEntry]] = defaultdict(list)
        for tensor in self.tensors:
            if tensor.layer is not None:
                grouped[tensor.layer].append(tensor)
        return dict(sorted(grouped.items()))

    def require(self, phase: str) -> None:
        """Raise :class:`UnsupportedModelError` (with the reason) unless ``phase`` is possible."""
        if not self.capabilities.allows(phase):
            label = Path(self.path).name
            raise UnsupportedModelError(label, f"cannot be used for {phase}: {self.capabilities.reasons[phase]}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (round-trips through :meth:`from_dict`)."""
        return {
            "format": self.format,
            "path": self.path,
            "files": list(self.files),
            "file_size": self.file_size,
            "architecture": self.architecture,
            "model_type": self.model_type,
            "name": self.name,
            "block_count": self.block_count,
            "embedding_length": self.embedding_length,
            "head_count": self.head_count,
            "head_count_kv": self.head_count_kv,
            "feed_forward_length": self.feed_forward_length,
            "context_length": self.context_length,
            "vocab_size": self.vocab_size,
            "chat_template": self.chat_template,
            "file_type": self.file_type,
            "gguf_version": self.gguf_version,
            "capabilities": self.capabilities.as_dict(),
            "n_params": self.n_params,
            "n_bytes": self.n_bytes,
            "quant_types": self.quant_types,
            "tensors": [t.as_dict() for t in self.tensors],
            "metadata": self.metadata,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        derived = {"n_params", "n_bytes", "quant_types"}  # recomputed from the tensors
        fields_ = {k: v for k, v in data.items() if k not in derived}
        return cls(
            **{
                **fields_,
                "files": tuple(data["files"]),
                "capabilities": Capabilities.from_dict(data["capabilities"]),
                "tensors": tuple(TensorEntry.from_dict(t) for t in data["tensors"]),
                "warnings": tuple(data.get("warnings", ())),
            }
        )
