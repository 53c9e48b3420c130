"""Read, validate and inventory uploaded teacher models (GGUF files, Hugging Face safetensors folders).

Everything here reads *headers* only; tensor bytes are touched in exactly one place,
:func:`hash_tensors`, which streams them through SHA-256 in bounded chunks. Nothing is ever
unpickled: PyTorch pickle checkpoints are recognised (by name and by content) and refused.

Entry points:

* :func:`detect_format` — what an arbitrary upload is, by magic bytes.
* :func:`inspect_model` — validate a GGUF file or safetensors folder and return a :class:`ModelInfo`
  (metadata, :class:`Capabilities`, one :class:`TensorRecord` per tensor; hashes on request).
* :func:`hash_tensors` — add SHA-256 per tensor to an inventory, with progress.
* :func:`compare_models` — what two hashed inventories share (:class:`ModelComparison`).
* :func:`plan_model_archive` — which files of a zipped model folder make the model (from the zip's
  listing, :mod:`projects.engine.archives`; pickles refused, other files left out).

Every problem with an input raises :class:`ModelFormatError` (a ``ValueError``) whose message names the
file, says what is wrong and what to do about it.

Shapes: GGUF lists a tensor's dimensions fastest-varying first (``ne[0]`` is the length of a row), which
is the reverse of PyTorch/numpy order — llama.cpp's ``output.weight`` with ``ne = [d_model, vocab]`` is
PyTorch's ``lm_head.weight`` of shape ``(vocab, d_model)``. Inventories always use **PyTorch order**, so
shapes from the two formats compare directly.

No Django imports: this module is importable and testable on its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal, NamedTuple

import numpy as np
from gguf import GGML_QUANT_SIZES, MODEL_ARCH_NAMES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from projects.engine.archives import ArchiveMember, strip_top_folder
from projects.engine.tensor_names import COMPONENTS, LLAMA_BLOCK_COMPONENTS, classify_tensor

__all__ = [
    "COMPONENTS",
    "PHASES",
    "Capabilities",
    "ModelComparison",
    "ModelFormatError",
    "MODEL_FILE_SUFFIXES",
    "ModelArchive",
    "ModelInfo",
    "PickleCheckpointError",
    "TensorRecord",
    "UnsupportedModelError",
    "compare_models",
    "detect_format",
    "hash_tensors",
    "inspect_model",
    "plan_model_archive",
]

PHASES: tuple[str, ...] = ("chat", "analysis", "distillation")

ProgressCallback = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``, called as tensor bytes are hashed."""

FormatKind = Literal["gguf", "safetensors", "pickle", "zip", "unknown"]

HASH_CHUNK_BYTES = 8 * 1024 * 1024
"""Bytes read per step while hashing: memory stays at one chunk whatever the model's size."""

# Extensions of formats that are (or wrap) Python pickles. Refused by name even before looking at
# the bytes: a worker that later trusts the extension must never be handed one.
PICKLE_EXTENSIONS = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})

#: Files of a model folder worth keeping: weights, index, config, tokenizer, chat templates.
MODEL_FILE_SUFFIXES = frozenset({".safetensors", ".json", ".model", ".txt", ".jinja", ".gguf"})

GGUF_MAGIC = b"GGUF"
GGUF_SUPPORTED_VERSIONS = (2, 3)  # v1 (early 2023) used 32-bit lengths; llama.cpp dropped it
GGUF_MAX_DIMS = 4  # GGML_MAX_DIMS in ggml.h
GGUF_DEFAULT_ALIGNMENT = 32
# Legacy (pre-GGUF) llama.cpp containers, magic as it appears on disk (little-endian uint32).
LEGACY_GGML_MAGICS = {b"lmgg": "ggml", b"fmgg": "ggmf", b"tjgg": "ggjt", b"algg": "ggla"}

# The safetensors library refuses headers above 100 MB; so do we, before allocating anything.
SAFETENSORS_MAX_HEADER = 100_000_000
# Bits per element for every dtype the safetensors format defines (F4/F6 pack below a byte).
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
HF_INDEX_NAME = "model.safetensors.index.json"
_SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<part>\d+)-of-(?P<total>\d+)\.safetensors$")

# Which architectures the analysis/distillation pipeline understands (hooks, pruning, GGUF export).
LLAMA_GGUF_ARCHITECTURES = frozenset({"llama"})
LLAMA_HF_ARCHITECTURES = frozenset({"LlamaForCausalLM"})
LLAMA_HF_MODEL_TYPES = frozenset({"llama"})
# Architectures the installed gguf library (and so the llama.cpp it tracks) knows; "clip" is a
# vision projector (mmproj), never a chat model on its own.
LLAMA_CPP_ARCHITECTURES = frozenset(MODEL_ARCH_NAMES.values()) - {"clip"}

# Metadata kept verbatim up to these sizes; larger values (token lists, merges, embedded
# tokenizer.json) are summarised so an inventory stays small enough for a database row.
_MAX_KEPT_ARRAY = 256
_MAX_KEPT_STRING = 64 * 1024
_MAX_CHAT_TEMPLATE = 1024 * 1024
_MAX_JSON_SIDE_FILE = 64 * 1024 * 1024  # config.json, tokenizer_config.json, index.json


# --------------------------------------------------------------------------------------------
# Errors


class ModelFormatError(ValueError):
    """An uploaded model file is unreadable, inconsistent or refused; the message says what to do."""

    def __init__(self, file: str, problem: str):
        self.file = file
        """The file (or folder) the problem is in, as the person knows it."""
        self.problem = problem
        """What is wrong and what to do, without the file name."""
        super().__init__(f"{file}: {problem}")


class PickleCheckpointError(ModelFormatError):
    """A PyTorch pickle checkpoint (or something that looks like one): refused, never opened."""


class UnsupportedModelError(ModelFormatError):
    """A valid model that cannot be used for the requested phase (see :meth:`ModelInfo.require`)."""


def _pickle_refusal(label: str, why: str) -> PickleCheckpointError:
    return PickleCheckpointError(
        label,
        f"refused: {why}. PyTorch pickle checkpoints can run code when loaded, so this platform never "
        "opens them; convert to safetensors (e.g. `model.save_pretrained(out_dir, safe_serialization=True)`) "
        "and upload that folder, or upload a GGUF file.",
    )


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class TensorRecord:
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
                f"n_params of {self.name!r} is {self.n_params}, but its shape {self.shape} holds {math.prod(self.shape)}"
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
    def from_dict(cls, data: dict[str, Any]) -> TensorRecord:
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
    """GGUF ``general.architecture`` (``llama``) or the first of config.json's ``architectures`` (``LlamaForCausalLM``)."""
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
    tensors: tuple[TensorRecord, ...]
    """One record per tensor: GGUF in header order; safetensors by offset, shard after shard."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Format metadata, JSON-safe: GGUF key/values (long arrays summarised), or config.json and safetensors ``__metadata__``."""
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

    def layers(self) -> dict[int, list[TensorRecord]]:
        """Tensors grouped by block index (tensors outside the blocks are left out)."""
        grouped: dict[int, list[TensorRecord]] = defaultdict(list)
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
                "tensors": tuple(TensorRecord.from_dict(t) for t in data["tensors"]),
                "warnings": tuple(data.get("warnings", ())),
            }
        )


# --------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: str | Path) -> FormatKind:
    """What a file is, from its first bytes (extensions lie; blobs have none).

    ``gguf`` (magic ``GGUF``), ``safetensors`` (8-byte header length that fits the file, then ``{``),
    ``zip`` (``PK``: includes ``torch.save`` archives, which wrap a pickle), ``pickle`` (protocol 2+
    opcode ``\\x80``), else ``unknown`` (also for empty files). For a folder: ``safetensors`` if it holds
    any ``.safetensors`` file, ``pickle`` if it holds only pickle-named checkpoints, else ``unknown``.
    """
    path = Path(path)
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
        if ".safetensors" in suffixes:
            return "safetensors"
        if suffixes & PICKLE_EXTENSIONS:
            return "pickle"
        return "unknown"
    with path.open("rb") as handle:
        head = handle.read(16)
        size = handle.seek(0, 2)
    return _kind_from_head(head, size)


def _kind_from_head(head: bytes, size: int) -> FormatKind:
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack_from("<Q", head)
        if 2 <= header_len <= size - 8:
            return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def _describe_head(head: bytes) -> str:
    """The first bytes as a person can read them in an error message."""
    return repr(head[:8]) if head else "nothing (empty file)"


def _refuse_pickled_content(label: str, head: bytes, size: int, suffix: str = "") -> None:
    """Raise :class:`PickleCheckpointError` if the bytes are a pickle or a (torch.save) zip, whatever the name."""
    kind = _kind_from_head(head, size)
    if kind in ("pickle", "zip"):
        what = "a Python pickle" if kind == "pickle" else "a zip archive (the torch.save format, which wraps a pickle)"
        despite = f" despite the {suffix} name" if suffix in (".gguf", ".safetensors") else ""
        raise _pickle_refusal(label, f"the content is {what}{despite}, not GGUF or safetensors")


# --------------------------------------------------------------------------------------------
# Bounded header reading


class _BoundedReader:
    """Sequential reads that never go past the file's end.

    Every length read from an untrusted header is checked against the bytes actually left before
    anything is read or allocated, so a corrupt count cannot make us loop for ages or ask for
    terabytes; running out of file becomes one clear "truncated" error naming what was being read.
    """

    _U32 = struct.Struct("<I")
    _U64 = struct.Struct("<Q")

    def __init__(self, handle: BinaryIO, size: int, label: str):
        self.handle = handle
        self.size = size
        self.label = label
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def truncated(self, what: str, needed: int) -> ModelFormatError:
        return ModelFormatError(
            self.label,
            f"the file ends at byte {self.size} while reading {what} at byte {self.pos} "
            f"({needed} more bytes needed): the file is truncated or corrupt; upload it again",
        )

    def read(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise self.truncated(what, n)
        data = self.handle.read(n)
        if len(data) != n:  # the file shrank under us
            raise self.truncated(what, n)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise self.truncated(what, n)
        self.handle.seek(n, 1)
        self.pos += n

    def u32(self, what: str) -> int:
        return self._U32.unpack(self.read(4, what))[0]

    def u64(self, what: str) -> int:
        return self._U64.unpack(self.read(8, what))[0]


# --------------------------------------------------------------------------------------------
# GGUF


# GGUF scalar value types: struct format; FLOAT32 is rounded back to its shortest decimal form.
_GGUF_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_GGUF_MAX_ARRAY_DEPTH = 4


@dataclass(frozen=True)
class _GGUFTensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: ne[0] first
    type_id: int
    relative_offset: int


def _gguf_value_type(raw: int, key: str, reader: _BoundedReader) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise ModelFormatError(
            reader.label,
            f"metadata key {key!r} has unknown value type {raw} at byte {reader.pos}: the file is corrupt "
            "or written by a GGUF writer newer than this server understands",
        ) from None


def _read_gguf_string(
    reader: _BoundedReader, what: str, *, keep: bool, limit: int = _MAX_KEPT_STRING
) -> str | dict[str, Any]:
    length = reader.u64(f"the length of {what}")
    if length > reader.remaining:
        raise reader.truncated(what, length)
    if not keep or length > limit:
        reader.skip(length, what)
        return {"type": "string", "length": length}
    return reader.read(length, what).decode("utf-8", errors="replace")


def _read_gguf_value(reader: _BoundedReader, vtype: GGUFValueType, key: str, depth: int = 0) -> Any:
    """One metadata value; arrays longer than ``_MAX_KEPT_ARRAY`` are summarised, not kept."""
    scalar = _GGUF_SCALARS.get(vtype)
    if scalar is not None:
        (value,) = scalar.unpack(reader.read(scalar.size, f"the value of {key!r}"))
        if vtype == GGUFValueType.FLOAT32:
            return _float32_for_humans(value)
        return _json_float(value) if vtype == GGUFValueType.FLOAT64 else value
    if vtype == GGUFValueType.STRING:
        return _read_gguf_string(reader, f"the value of {key!r}", keep=True)
    # ARRAY: item type, count, items
    if depth >= _GGUF_MAX_ARRAY_DEPTH:
        raise ModelFormatError(
            reader.label, f"metadata key {key!r} nests arrays deeper than {_GGUF_MAX_ARRAY_DEPTH}: the file is corrupt"
        )
    item_type = _gguf_value_type(reader.u32(f"the array type of {key!r}"), key, reader)
    count = reader.u64(f"the array length of {key!r}")
    item = _GGUF_SCALARS.get(item_type)
    min_item = item.size if item else 8 if item_type == GGUFValueType.STRING else 12
    if count * min_item > reader.remaining:  # cheap plausibility check before looping
        raise reader.truncated(f"the {count} items of {key!r}", count * min_item)
    keep = count <= _MAX_KEPT_ARRAY
    summary = {"type": "array", "item_type": item_type.name, "length": count}
    if item is not None:
        if not keep:
            reader.skip(count * item.size, f"the items of {key!r}")
            return summary
        raw = reader.read(count * item.size, f"the items of {key!r}")
        values = [v for (v,) in item.iter_unpack(raw)]
        if item_type == GGUFValueType.FLOAT32:
            return [_float32_for_humans(v) for v in values]
        return [_json_float(v) for v in values] if item_type == GGUFValueType.FLOAT64 else values
    if item_type == GGUFValueType.STRING:
        strings = [_read_gguf_string(reader, f"item {i} of {key!r}", keep=keep) for i in range(count)]
        return strings if keep else summary
    nested = [_read_gguf_value(reader, item_type, key, depth + 1) for _ in range(count)]
    return nested if keep else summary


def _float32_for_humans(value: float) -> float | str:
    # 1e-5 stored as float32 reads back as 9.999999747378752e-06; numpy's shortest float32
    # representation gives back what the writer meant.
    return float(str(np.float32(value))) if math.isfinite(value) else _json_float(value)


def _json_float(value: float) -> float | str:
    # NaN and infinity are not JSON; an inventory must fit a JSON column.
    return value if math.isfinite(value) else str(value)


def _read_gguf_header(path: Path, label: str) -> tuple[int, dict[str, Any], list[_GGUFTensorInfo], int]:
    """Parse a GGUF header: (version, metadata, tensor infos, absolute offset of the data section)."""
    size = path.stat().st_size
    if size == 0:
        raise ModelFormatError(label, "the file is empty (0 bytes): the upload probably failed; upload it again")
    with path.open("rb", buffering=1024 * 1024) as handle:
        reader = _BoundedReader(handle, size, label)
        head = handle.read(16)
        handle.seek(0)
        if head[:4] != GGUF_MAGIC:
            _refuse_pickled_content(label, head, size, ".gguf")
            raise _wrong_gguf_magic(label, head, size)
        reader.skip(4, "the magic")
        version = reader.u32("the GGUF version")
        if version & 0xFFFF == 0 and version != 0:
            raise ModelFormatError(
                label,
                f"this GGUF file is big-endian (version field reads {version:#x}); llama.cpp on x86/ARM "
                "needs little-endian: convert it with gguf-py's gguf_convert_endian.py and upload the result",
            )
        if version not in GGUF_SUPPORTED_VERSIONS:
            advice = (
                "GGUF version 1 is from early 2023 and no longer supported: re-convert the model with a "
                "current llama.cpp (convert_hf_to_gguf.py)"
                if version <= 1
                else "the file is newer than this server understands: re-export it as GGUF v3 or ask an operator to upgrade"
            )
            raise ModelFormatError(label, f"unsupported GGUF version {version} (supported: 2 and 3); {advice}")
        n_tensors = reader.u64("the tensor count")
        n_kv = reader.u64("the metadata count")
        # Each key/value needs >= 13 bytes and each tensor info >= 24: reject absurd counts up front.
        if n_kv * 13 + n_tensors * 24 > reader.remaining:
            raise ModelFormatError(
                label,
                f"the header claims {n_kv} metadata entries and {n_tensors} tensors, more than a "
                f"{size}-byte file can hold: the file is truncated or corrupt; upload it again",
            )

        metadata: dict[str, Any] = {}
        for index in range(n_kv):
            key_value = _read_gguf_string(reader, f"metadata key #{index}", keep=True, limit=65535)
            if not isinstance(key_value, str):
                raise ModelFormatError(
                    label, f"metadata key #{index} is {key_value['length']} bytes long: the file is corrupt"
                )
            key = key_value
            vtype = _gguf_value_type(reader.u32(f"the type of {key!r}"), key, reader)
            if key == "tokenizer.chat_template" and vtype == GGUFValueType.STRING:
                # kept beyond the usual string limit: templates of 10-30 KB are common
                value = _read_gguf_string(reader, "the chat template", keep=True, limit=_MAX_CHAT_TEMPLATE)
            else:
                value = _read_gguf_value(reader, vtype, key)
            if key in metadata:
                raise ModelFormatError(label, f"metadata key {key!r} appears twice: the file is corrupt")
            metadata[key] = value

        infos: list[_GGUFTensorInfo] = []
        for index in range(n_tensors):
            name = _read_gguf_string(reader, f"the name of tensor #{index}", keep=True, limit=65535)
            if not isinstance(name, str):
                raise ModelFormatError(label, f"tensor #{index} has a {name['length']}-byte name: the file is corrupt")
            n_dims = reader.u32(f"the dimension count of tensor {name!r}")
            if n_dims > GGUF_MAX_DIMS:
                raise ModelFormatError(
                    label,
                    f"tensor {name!r} has {n_dims} dimensions; GGUF allows at most {GGUF_MAX_DIMS}: the file is corrupt",
                )
            dims = tuple(reader.u64(f"the dimensions of tensor {name!r}") for _ in range(n_dims))
            type_id = reader.u32(f"the type of tensor {name!r}")
            relative = reader.u64(f"the data offset of tensor {name!r}")
            infos.append(_GGUFTensorInfo(name, dims, type_id, relative))
        header_end = reader.pos

    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ModelFormatError(
            label, f"general.alignment is {alignment!r}; it must be a power of two: the file is corrupt"
        )
    data_start = -(-header_end // alignment) * alignment
    return version, metadata, infos, data_start


def _wrong_gguf_magic(label: str, head: bytes, size: int) -> ModelFormatError:
    if head[:4] in LEGACY_GGML_MAGICS:
        hint = (
            f"the content is a legacy {LEGACY_GGML_MAGICS[head[:4]]} file from before GGUF (2023): "
            "re-convert it with llama.cpp's convert_llama_ggml_to_gguf.py"
        )
    elif _kind_from_head(head, size) == "safetensors":
        hint = "the content is safetensors: name it .safetensors and upload it inside its Hugging Face folder"
    else:
        hint = "upload a GGUF file written by llama.cpp (convert_hf_to_gguf.py or llama-quantize)"
    return ModelFormatError(label, f"not a GGUF file: expected magic GGUF, found {_describe_head(head)}; {hint}")


def _gguf_records(
    label: str, file_name: str, infos: list[_GGUFTensorInfo], data_start: int, size: int, alignment: int
) -> list[TensorRecord]:
    """Validate each tensor info against the file and turn it into a record (PyTorch shape order)."""
    names = Counter(info.name for info in infos)
    duplicate = next((name for name, count in names.items() if count > 1), None)
    if duplicate is not None:
        raise ModelFormatError(
            label, f"tensor {duplicate!r} appears {names[duplicate]} times in the header: the file is corrupt"
        )
    records: list[TensorRecord] = []
    for info in infos:
        try:
            qtype = GGMLQuantizationType(info.type_id)
            block_size, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise ModelFormatError(
                label,
                f"tensor {info.name!r} has unknown type id {info.type_id}: the file is corrupt or uses a "
                "quantisation newer than this server understands (re-quantise to a common type such as Q4_K_M or Q8_0)",
            ) from None
        row = info.dims[0] if info.dims else 1
        if row % block_size:
            raise ModelFormatError(
                label,
                f"tensor {info.name!r} has rows of {row} elements, not a multiple of the {qtype.name} block size "
                f"{block_size}: the file is corrupt",
            )
        n_params = math.prod(info.dims)
        n_bytes = n_params // block_size * type_size
        if info.relative_offset % alignment:
            raise ModelFormatError(
                label,
                f"tensor {info.name!r} data offset {info.relative_offset} is not aligned to {alignment} bytes: the file is corrupt",
            )
        offset = data_start + info.relative_offset
        if offset + n_bytes > size:
            raise ModelFormatError(
                label,
                f"tensor {info.name!r} ({qtype.name}, {n_bytes} bytes) lies at bytes {offset}-{offset + n_bytes} "
                f"but the file is only {size} bytes: the file is truncated (an interrupted upload?) or corrupt; upload it again",
            )
        layer, component = classify_tensor(info.name)
        records.append(
            TensorRecord(
                name=info.name,
                file=file_name,
                layer=layer,
                component=component,
                shape=tuple(reversed(info.dims)),
                dtype=qtype.name,
                n_params=n_params,
                offset=offset,
                n_bytes=n_bytes,
            )
        )
    _check_no_overlap(label, records)
    return records


def _check_no_overlap(label: str, records: Iterable[TensorRecord]) -> None:
    previous: TensorRecord | None = None
    for record in sorted(records, key=lambda r: (r.offset, r.n_bytes)):
        if previous is not None and record.offset < previous.offset + previous.n_bytes and record.n_bytes:
            raise ModelFormatError(
                label,
                f"tensors {previous.name!r} and {record.name!r} overlap (bytes {previous.offset}-"
                f"{previous.offset + previous.n_bytes} and {record.offset}-{record.offset + record.n_bytes}): the file is corrupt",
            )
        previous = record


def _as_int(value: Any) -> int | None:
    """A hyper-parameter that may be stored per layer (an array): its largest value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return max(value)
    return None


def _inspect_gguf(path: Path, label: str) -> ModelInfo:
    version, metadata, infos, data_start = _read_gguf_header(path, label)
    size = path.stat().st_size
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    split_count = metadata.get("split.count")
    if isinstance(split_count, int) and split_count > 1:
        part = metadata.get("split.no")
        which = f"part {part + 1}" if isinstance(part, int) else "one part"
        raise ModelFormatError(
            label,
            f"this is {which} of a {split_count}-part split GGUF: merge the parts with "
            "`llama-gguf-split --merge first-part.gguf merged.gguf` and upload the single merged file",
        )
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise ModelFormatError(
            label, "the GGUF metadata has no general.architecture: the file is incomplete; re-convert it with llama.cpp"
        )
    records = _gguf_records(label, path.name, infos, data_start, size, alignment)

    def arch_key(key: str) -> Any:
        return metadata.get(f"{architecture}.{key}")

    tokens = metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, dict):  # summarised long array
        vocab_size: int | None = tokens["length"]
    elif isinstance(tokens, list):
        vocab_size = len(tokens)
    else:
        vocab_size = _as_int(arch_key("vocab_size"))
        if vocab_size is None:
            embedding = next((r for r in records if r.component == "embedding"), None)
            vocab_size = embedding.shape[0] if embedding else None
    warnings: list[str] = []
    chat_template = metadata.pop("tokenizer.chat_template", None)
    if isinstance(chat_template, dict):
        warnings.append(f"the chat template is {chat_template['length']} bytes long and was not read")
        chat_template = None
    raw_file_type = metadata.get("general.file_type")
    file_type = None
    if isinstance(raw_file_type, int):
        try:
            file_type = LlamaFileType(raw_file_type).name
        except ValueError:
            file_type = f"UNKNOWN_{raw_file_type}"
    block_count = _as_int(arch_key("block_count"))
    expert_count = _as_int(arch_key("expert_count")) or 0
    capabilities = _gguf_capabilities(
        architecture, "tokenizer.ggml.tokens" in metadata, records, block_count, expert_count
    )
    name = metadata.get("general.name")
    return ModelInfo(
        format="gguf",
        path=str(path),
        files=(path.name,),
        file_size=size,
        architecture=architecture,
        model_type=architecture,
        name=name if isinstance(name, str) else None,
        block_count=block_count,
        embedding_length=_as_int(arch_key("embedding_length")),
        head_count=_as_int(arch_key("attention.head_count")),
        head_count_kv=_as_int(arch_key("attention.head_count_kv")),
        feed_forward_length=_as_int(arch_key("feed_forward_length")),
        context_length=_as_int(arch_key("context_length")),
        vocab_size=vocab_size,
        chat_template=chat_template,
        file_type=file_type,
        gguf_version=version,
        capabilities=capabilities,
        tensors=tuple(records),
        metadata=metadata,
        warnings=tuple(warnings),
    )


def _gguf_capabilities(
    architecture: str, has_tokenizer: bool, records: list[TensorRecord], block_count: int | None, expert_count: int
) -> Capabilities:
    reasons: dict[str, str] = {}
    if architecture == "clip":
        reasons["chat"] = (
            "this is a multimodal projector (mmproj, architecture 'clip'), not a language model; upload the language model's GGUF"
        )
    elif architecture not in LLAMA_CPP_ARCHITECTURES:
        reasons["chat"] = (
            f"architecture {architecture!r} is not one llama.cpp knows (per the installed gguf library); "
            "upload a GGUF of a supported architecture"
        )
    elif not has_tokenizer:
        reasons["chat"] = (
            "the GGUF has no tokenizer (tokenizer.ggml.tokens); re-convert it with llama.cpp's convert_hf_to_gguf.py from a folder that includes the tokenizer files"
        )
    if architecture not in LLAMA_GGUF_ARCHITECTURES:
        why = (
            f"architecture {architecture!r} is not llama-family: analysis and distillation need "
            "general.architecture 'llama' (e.g. Llama, SmolLM, TinyLlama)"
        )
        if architecture in LLAMA_CPP_ARCHITECTURES:
            why += "; it can still be used for chat only"
        reasons["analysis"] = reasons["distillation"] = why
    elif expert_count > 0:
        reasons["analysis"] = reasons["distillation"] = (
            f"this is a mixture-of-experts model ({expert_count} experts); analysis and distillation need a dense llama model"
        )
    else:
        problem = _llama_structure_problem(records, block_count)
        if problem:
            reasons["analysis"] = reasons["distillation"] = problem
        elif not has_tokenizer:
            reasons["analysis"] = reasons["distillation"] = (
                "the GGUF has no tokenizer, which analysis needs to read a dataset"
            )
    return _capabilities(reasons)


def _capabilities(reasons: dict[str, str]) -> Capabilities:
    return Capabilities(
        chat="chat" not in reasons,
        analysis="analysis" not in reasons,
        distillation="distillation" not in reasons,
        reasons=reasons,
    )


def _llama_structure_problem(records: list[TensorRecord], block_count: int | None) -> str | None:
    """Why a llama-declared model cannot be analysed (missing blocks or projections), or None."""
    if not block_count:
        return "the model does not declare its number of layers (block_count / num_hidden_layers)"
    present: dict[int, set[str]] = defaultdict(set)
    for record in records:
        if record.layer is not None:
            present[record.layer].add(record.component)
    extra = sorted(set(present) - set(range(block_count)))
    if extra:
        return f"the model declares {block_count} layers but has tensors for layer(s) {extra[:5]}"
    for layer in range(block_count):
        missing = [c for c in LLAMA_BLOCK_COMPONENTS if c not in present.get(layer, set())]
        if missing:
            return f"layer {layer} lacks {', '.join(missing)} tensors, so it is not a standard llama block"
    if not any(r.component == "embedding" for r in records):
        return "the model has no token embedding tensor"
    return None


# --------------------------------------------------------------------------------------------
# safetensors


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicate = next(k for k, c in Counter(keys).items() if c > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _read_safetensors_header(path: Path, label: str) -> tuple[dict[str, str], list[TensorRecord]]:
    """Parse and validate one safetensors file's header: (``__metadata__``, records in file order).

    Layout: 8-byte little-endian header length N, N bytes of JSON, then the data section; each
    tensor's ``data_offsets`` are relative to the data section. Checked as the safetensors library
    checks on load: every dtype known, each byte range matching shape × dtype, ranges back to back
    from 0 with no gap or overlap and ending exactly at the end of the file.
    """
    size = path.stat().st_size
    if size == 0:
        raise ModelFormatError(label, "the file is empty (0 bytes): the upload probably failed; upload it again")
    with path.open("rb") as handle:
        head = handle.read(16)
        handle.seek(8)
        _refuse_pickled_content(label, head, size, ".safetensors")
        if len(head) < 8:
            raise ModelFormatError(
                label,
                f"the file is only {size} bytes, too short for a safetensors header: it is truncated; upload it again",
            )
        (header_len,) = struct.unpack_from("<Q", head)
        if header_len > size - 8:
            hint = (
                "the content is GGUF: name it .gguf and upload it on its own"
                if head[:4] == GGUF_MAGIC
                else "upload the complete file again, as written by save_pretrained(..., safe_serialization=True)"
            )
            raise ModelFormatError(
                label,
                f"not a valid safetensors file: the header length field says {header_len} bytes but the file is only "
                f"{size} bytes, so it is truncated or not safetensors; {hint}",
            )
        if header_len > SAFETENSORS_MAX_HEADER:
            raise ModelFormatError(
                label,
                f"the safetensors header is {header_len} bytes, above the format's 100 MB limit: the file is corrupt",
            )
        raw_header = handle.read(header_len)
    try:
        header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(
            label, f"the safetensors header is not valid JSON ({exc}): the file is corrupt or not safetensors"
        ) from None
    if not isinstance(header, dict):
        raise ModelFormatError(label, "the safetensors header is not a JSON object: the file is corrupt")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ModelFormatError(label, "the safetensors __metadata__ is not an object: the file is corrupt")
    data_start = 8 + header_len
    data_len = size - data_start
    records: list[TensorRecord] = []
    for name, entry in header.items():
        dtype, shape, offsets = (
            (entry.get(k) for k in ("dtype", "shape", "data_offsets")) if isinstance(entry, dict) else (None,) * 3
        )
        if not (
            isinstance(dtype, str)
            and isinstance(shape, list)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in [*shape, *offsets])
        ):
            raise ModelFormatError(
                label,
                f"tensor {name!r} needs dtype, shape and data_offsets [begin, end] of non-negative integers, got {entry!r}: the file is corrupt",
            )
        bits = SAFETENSORS_DTYPE_BITS.get(dtype)
        if bits is None:
            raise ModelFormatError(
                label,
                f"tensor {name!r} has unknown dtype {dtype!r} (known: {', '.join(SAFETENSORS_DTYPE_BITS)}): the file is corrupt or from a newer safetensors",
            )
        begin, end = offsets
        n_params = math.prod(shape)
        if end < begin:
            raise ModelFormatError(
                label, f"tensor {name!r} data_offsets [{begin}, {end}] end before they begin: the file is corrupt"
            )
        if end > data_len:
            raise ModelFormatError(
                label,
                f"tensor {name!r} data_offsets [{begin}, {end}] point past the end of the data section ({data_len} bytes; "
                f"file {size} bytes): the file is truncated or its header is corrupt; upload it again",
            )
        if n_params * bits % 8 or n_params * bits // 8 != end - begin:
            raise ModelFormatError(
                label,
                f"tensor {name!r} has shape {shape} of {dtype} ({n_params} elements × {bits} bits = {n_params * bits / 8:g} bytes) "
                f"but its data_offsets [{begin}, {end}] span {end - begin} bytes: the file is corrupt",
            )
        layer, component = classify_tensor(name)
        records.append(
            TensorRecord(
                name=name,
                file=path.name,
                layer=layer,
                component=component,
                shape=tuple(shape),
                dtype=dtype,
                n_params=n_params,
                offset=data_start + begin,
                n_bytes=end - begin,
            )
        )

    # Back to back from 0 to the end, as the safetensors library insists when loading.
    cursor, previous = data_start, None
    for record in sorted(records, key=lambda r: (r.offset, r.n_bytes)):
        if record.offset < cursor:
            raise ModelFormatError(
                label, f"tensors {previous!r} and {record.name!r} overlap in the data section: the file is corrupt"
            )
        if record.offset > cursor:
            raise ModelFormatError(
                label,
                f"there are {record.offset - cursor} unused bytes before tensor {record.name!r} (at byte {cursor}): "
                "safetensors stores tensors back to back and the safetensors library refuses such files; re-save the model",
            )
        cursor, previous = record.offset + record.n_bytes, record.name
    if cursor != size:
        raise ModelFormatError(
            label,
            f"the file has {size - cursor} bytes after the last tensor: safetensors files end with their last "
            "tensor and the safetensors library refuses this one; re-save the model",
        )
    return {str(k): v for k, v in metadata.items()}, sorted(records, key=lambda r: r.offset)


def _read_json_file(path: Path, label: str) -> Any:
    size = path.stat().st_size
    if size > _MAX_JSON_SIDE_FILE:
        raise ModelFormatError(
            label, f"{path.name} is {size} bytes, far larger than such a file can be: it is not what its name says"
        )
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(label, f"{path.name} is not valid JSON ({exc}); fix or re-save it") from None


_NO_WEIGHTS_ADVICE = "upload a Hugging Face folder saved with safe_serialization=True, or a GGUF file"


def _missing_config(label: str, names: Iterable[str]) -> ModelFormatError:
    if "adapter_config.json" in names:
        return ModelFormatError(
            label,
            "missing config.json; this looks like a LoRA adapter (adapter_config.json), not a full model: merge it into its base model (peft's merge_and_unload) and upload the merged model",
        )
    return ModelFormatError(
        label,
        "missing config.json: a Hugging Face model folder needs config.json (architecture and sizes); upload the whole folder as written by save_pretrained",
    )


# Files beside the weights that a Hugging Face folder may hold and that are read here.
_HF_SIDE_FILES = (
    "config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
)


def _inspect_safetensors(path: Path, label: str) -> ModelInfo:
    """A Hugging Face folder, or one ``.safetensors`` file whose folder holds config.json."""
    if path.is_dir():
        folder, folder_label = path, label
        entries = sorted(p for p in path.iterdir() if p.is_file())
        names = {p.name for p in entries}
        safetensor_files = [p for p in entries if p.suffix.lower() == ".safetensors"]
        pickles = [p.name for p in entries if p.suffix.lower() in PICKLE_EXTENSIONS]
    else:
        # A lone file: only look up the known side files (its folder may be a large blob store).
        folder, folder_label = path.parent, f"{label} (in {path.parent.name or path.parent})"
        names = {name for name in _HF_SIDE_FILES if (folder / name).is_file()} | {path.name}
        safetensor_files, pickles = [path], []
    warnings: list[str] = []

    if path.is_dir() and not safetensor_files:
        if pickles:
            raise _pickle_refusal(
                label, f"the folder has PyTorch pickle checkpoints ({', '.join(pickles[:3])}) and no .safetensors files"
            )
        raise ModelFormatError(label, f"the folder has no .safetensors or .gguf files: {_NO_WEIGHTS_ADVICE}")
    if pickles:
        warnings.append(f"pickle checkpoints were ignored and never opened: {', '.join(pickles)}")

    if "config.json" not in names:
        raise _missing_config(folder_label, names)
    config = _read_json_file(folder / "config.json", folder_label)
    if not isinstance(config, dict):
        raise ModelFormatError(folder_label, "config.json is not a JSON object; re-save the model with save_pretrained")

    if not path.is_dir():
        shard_files = [path]
        expected: dict[str, str] | None = None
        total_size = None
    elif HF_INDEX_NAME in names:
        shard_files, expected, total_size = _read_safetensors_index(folder, label, safetensor_files, warnings)
    elif "model.safetensors" in names or len(safetensor_files) == 1:
        shard_files = [folder / "model.safetensors"] if "model.safetensors" in names else safetensor_files
        expected, total_size = None, None
        ignored = [p.name for p in safetensor_files if p not in shard_files]
        if ignored:
            warnings.append(f"ignored .safetensors files other than model.safetensors: {', '.join(ignored)}")
    else:
        raise ModelFormatError(
            label,
            f"found {len(safetensor_files)} .safetensors files but no {HF_INDEX_NAME}: upload the index file saved alongside the shards",
        )

    records: list[TensorRecord] = []
    file_metadata: dict[str, dict[str, str]] = {}
    for shard in shard_files:
        shard_metadata, shard_records = _read_safetensors_header(shard, shard.name if path.is_dir() else label)
        file_metadata[shard.name] = shard_metadata
        records.extend(shard_records)
    seen: dict[str, str] = {}
    for record in records:
        if record.name in seen:
            raise ModelFormatError(
                label,
                f"tensor {record.name!r} is stored twice, in {seen[record.name]} and {record.file}: the shards are inconsistent; re-save the model",
            )
        seen[record.name] = record.file
    if expected is not None:
        for tensor, shard in expected.items():
            if seen.get(tensor) != shard:
                where = f"it is in {seen[tensor]}" if tensor in seen else "no shard contains it"
                raise ModelFormatError(
                    label,
                    f"{HF_INDEX_NAME} says tensor {tensor!r} is in {shard}, but {where}: the index and shards do not match; upload the complete folder again",
                )
        unlisted = [name for name in seen if name not in expected]
        if unlisted:
            warnings.append(
                f"{len(unlisted)} tensor(s) are in the shards but not in {HF_INDEX_NAME} (e.g. {unlisted[0]!r})"
            )
        actual = sum(r.n_bytes for r in records)
        if isinstance(total_size, int) and total_size != actual:
            warnings.append(
                f"{HF_INDEX_NAME} says metadata.total_size is {total_size} but the tensors hold {actual} bytes"
            )

    return _safetensors_info(
        path, folder, config, records, [p.name for p in shard_files], file_metadata, warnings, names
    )


def _read_safetensors_index(
    folder: Path, label: str, safetensor_files: list[Path], warnings: list[str]
) -> tuple[list[Path], dict[str, str], Any]:
    """Shards named by ``model.safetensors.index.json`` and its tensor → shard map, cross-checked with the folder."""
    index = _read_json_file(folder / HF_INDEX_NAME, label)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelFormatError(
            label,
            f"{HF_INDEX_NAME} has no weight_map of tensor name → shard file: re-save the model with save_pretrained",
        )
    referenced = sorted(set(weight_map.values()))
    for shard in referenced:
        # Shard names come from an uploaded file: never let them reach outside the folder.
        if Path(shard).name != shard or shard in (".", ".."):
            raise ModelFormatError(
                label, f"{HF_INDEX_NAME} names shard {shard!r}, which is not a plain file name: refused"
            )
        if not (folder / shard).is_file():
            raise ModelFormatError(
                label, f"{HF_INDEX_NAME} references shard {shard}, which is not in the folder: upload every shard"
            )
    # A file of the same "-NNNNN-of-MMMMM" series that the index never mentions means the index and
    # the shards come from different saves.
    series = {(m["stem"], m["total"]) for m in map(_SHARD_NAME.match, referenced) if m}
    for path in safetensor_files:
        match = _SHARD_NAME.match(path.name)
        if path.name in referenced:
            continue
        if match and (match["stem"], match["total"]) in series:
            raise ModelFormatError(
                label,
                f"shard {path.name} is in the folder but {HF_INDEX_NAME} never references it: the index and shards come from different saves; upload a consistent folder",
            )
        warnings.append(f"{path.name} is not referenced by {HF_INDEX_NAME} and was ignored")
    for stem, total in series:
        parts = {
            int(m["part"]) for m in map(_SHARD_NAME.match, referenced) if m and (m["stem"], m["total"]) == (stem, total)
        }
        # The first part number missing from 1..total; searched only up to len(parts) + 1 so a
        # forged "-of-99999999" cannot make us count that far.
        gap = next(i for i in range(1, len(parts) + 2) if i not in parts)
        if gap <= int(total):
            missing = f"{stem}-{gap:0{len(total)}d}-of-{total}.safetensors"
            raise ModelFormatError(
                label,
                f"{HF_INDEX_NAME} never references {missing} of the {int(total)}-shard series: the index is incomplete; upload the index saved with these shards",
            )
    metadata = index.get("metadata")
    total_size = metadata.get("total_size") if isinstance(metadata, dict) else None
    return [folder / shard for shard in referenced], {str(k): v for k, v in weight_map.items()}, total_size


def _config_value(config: dict[str, Any], *keys: str) -> Any:
    # Multimodal configs keep the language model's sizes under text_config.
    for source in (config, config.get("text_config") if isinstance(config.get("text_config"), dict) else {}):
        for key in keys:
            if key in source:
                return source[key]
    return None


def _hf_chat_template(folder: Path, names: set[str], label: str) -> str | None:
    if "chat_template.jinja" in names:
        template_path = folder / "chat_template.jinja"
        if template_path.stat().st_size > _MAX_CHAT_TEMPLATE:
            raise ModelFormatError(
                label,
                f"chat_template.jinja is larger than {_MAX_CHAT_TEMPLATE} bytes, far more than a chat template needs; fix or remove it",
            )
        return template_path.read_text(encoding="utf-8", errors="replace")
    for file_name in ("tokenizer_config.json", "chat_template.json"):
        if file_name in names:
            data = _read_json_file(folder / file_name, label)
            template = data.get("chat_template") if isinstance(data, dict) else None
            if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
                named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
                template = named.get("default") or next(iter(named.values()), None)
            if isinstance(template, str):
                return template
    return None


def _safetensors_info(
    path: Path,
    folder: Path,
    config: dict[str, Any],
    records: list[TensorRecord],
    files: list[str],
    file_metadata: dict[str, dict[str, str]],
    warnings: list[str],
    names: set[str],
) -> ModelInfo:
    label = path.name
    declared = config.get("architectures")
    architectures = [a for a in declared if isinstance(a, str)] if isinstance(declared, list) else []
    architecture = architectures[0] if architectures else None
    model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    block_count = _as_int(_config_value(config, "num_hidden_layers", "n_layer"))
    head_count = _as_int(_config_value(config, "num_attention_heads", "n_head"))
    head_count_kv = _as_int(_config_value(config, "num_key_value_heads")) or head_count
    has_tokenizer = bool({"tokenizer.json", "tokenizer.model"} & names)

    reasons: dict[str, str] = {}
    is_llama = bool(set(architectures) & LLAMA_HF_ARCHITECTURES) or model_type in LLAMA_HF_MODEL_TYPES
    if is_llama:
        reasons["chat"] = (
            "chat runs on llama.cpp, which needs GGUF: convert this folder with llama.cpp's "
            "convert_hf_to_gguf.py and upload the .gguf (students built from it are GGUF already)"
        )
        problem = _llama_structure_problem(records, block_count)
        if problem is None and not has_tokenizer:
            problem = "the folder has no tokenizer (tokenizer.json or tokenizer.model), which analysis needs to read a dataset; upload it with the model"
        if (
            problem is None
            and config.get("tie_word_embeddings") is False
            and not any(r.component == "output_head" for r in records)
        ):
            problem = "lm_head.weight is missing and tie_word_embeddings is false"
        if problem:
            reasons["analysis"] = reasons["distillation"] = problem
    else:
        described = f"architecture {architecture or 'unknown'} (model_type {model_type!r})"
        reasons["chat"] = (
            f"{described} is not supported as safetensors; chat needs a GGUF: convert it with llama.cpp's "
            "convert_hf_to_gguf.py (if llama.cpp supports it) and upload the .gguf"
        )
        reasons["analysis"] = reasons["distillation"] = (
            f"{described} is not supported: analysis and distillation need a llama-family model "
            "(LlamaForCausalLM / model_type 'llama')"
        )

    name = (
        config.get("_name_or_path")
        if isinstance(config.get("_name_or_path"), str) and config.get("_name_or_path")
        else folder.name
    )
    torch_dtype = _config_value(config, "torch_dtype", "dtype")
    return ModelInfo(
        format="safetensors",
        path=str(path),
        files=tuple(files),
        file_size=sum((folder / f).stat().st_size for f in files),
        architecture=architecture,
        model_type=model_type,
        name=name,
        block_count=block_count,
        embedding_length=_as_int(_config_value(config, "hidden_size", "n_embd")),
        head_count=head_count,
        head_count_kv=head_count_kv,
        feed_forward_length=_as_int(_config_value(config, "intermediate_size", "n_inner")),
        context_length=_as_int(_config_value(config, "max_position_embeddings", "n_positions")),
        vocab_size=_as_int(_config_value(config, "vocab_size")),
        chat_template=_hf_chat_template(folder, names, label),
        file_type=torch_dtype if isinstance(torch_dtype, str) else None,
        gguf_version=None,
        capabilities=_capabilities(reasons),
        tensors=tuple(records),
        metadata={"config": config, "safetensors_metadata": file_metadata},
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------------------------
# Entry points


def inspect_model(
    path: str | Path,
    *,
    with_hashes: bool = False,
    progress: ProgressCallback | None = None,
    original_name: str | None = None,
) -> ModelInfo:
    """Validate a model upload and inventory its tensors, reading headers only.

    ``path`` is a GGUF file, a ``.safetensors`` file (config.json beside it), or a Hugging Face folder
    (config.json, tokenizer files, ``model.safetensors`` or shards + ``model.safetensors.index.json``).
    ``original_name`` is the name the person uploaded, used for messages and extension checks when
    ``path`` is a content-addressed blob without a meaningful name. With ``with_hashes`` every tensor's
    bytes are streamed through SHA-256 (see :func:`hash_tensors`, which receives ``progress``).

    Raises :class:`ModelFormatError` (:class:`PickleCheckpointError` for pickles) when the upload is unusable.
    An architecture the pipeline cannot analyse is not an error here: see ``info.capabilities`` / ``info.require``.
    """
    path = Path(path)
    label = original_name or path.name
    if not path.exists():
        raise ModelFormatError(label, f"no such file or folder: {path}")
    if path.is_dir():
        ggufs = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
        has_safetensors = any(p.suffix.lower() == ".safetensors" for p in path.iterdir())
        if ggufs and not has_safetensors:
            if len(ggufs) > 1:
                raise ModelFormatError(
                    label,
                    f"the folder holds {len(ggufs)} GGUF files ({', '.join(p.name for p in ggufs[:3])}); upload one GGUF file at a time",
                )
            info = _inspect_gguf(ggufs[0], ggufs[0].name)
        else:
            info = _inspect_safetensors(path, label)
            if ggufs:
                ignored = f"GGUF files beside the safetensors weights were ignored (upload them on their own): {', '.join(p.name for p in ggufs)}"
                info = replace(info, warnings=(*info.warnings, ignored))
    else:
        size = path.stat().st_size
        if size == 0:
            raise ModelFormatError(label, "the file is empty (0 bytes): the upload probably failed; upload it again")
        with path.open("rb") as handle:
            head = handle.read(16)
        kind = _kind_from_head(head, size)
        suffix = Path(label).suffix.lower()
        if suffix in PICKLE_EXTENSIONS:
            if kind == "gguf":
                raise ModelFormatError(
                    label, f"the file is named {suffix} but holds GGUF data: rename it to .gguf and upload it again"
                )
            if kind == "safetensors":
                raise ModelFormatError(
                    label,
                    f"the file is named {suffix} but holds safetensors data: rename it to .safetensors and upload it in its Hugging Face folder",
                )
            if head[:4] in LEGACY_GGML_MAGICS:
                raise ModelFormatError(
                    label,
                    f"this is a legacy {LEGACY_GGML_MAGICS[head[:4]]} file from before GGUF (2023): re-convert it with llama.cpp's convert_llama_ggml_to_gguf.py and upload the .gguf",
                )
            raise _pickle_refusal(label, f"{suffix} files are PyTorch pickle checkpoints")
        _refuse_pickled_content(label, head, size, suffix)
        if suffix == ".gguf" or (kind == "gguf" and suffix != ".safetensors"):
            info = _inspect_gguf(path, label)
        elif suffix == ".safetensors" or kind == "safetensors":
            info = _inspect_safetensors(path, label)
        else:
            legacy = head[:4] in LEGACY_GGML_MAGICS
            advice = (
                f"it is a legacy {LEGACY_GGML_MAGICS[head[:4]]} file from before GGUF: re-convert it with llama.cpp's convert_llama_ggml_to_gguf.py"
                if legacy
                else "upload a GGUF file, or a Hugging Face folder with config.json and .safetensors weights"
            )
            raise ModelFormatError(
                label, f"not a GGUF or safetensors file (it starts with {_describe_head(head)}): {advice}"
            )
    if with_hashes:
        info = hash_tensors(info, progress)
    return info


class ModelArchive(NamedTuple):
    """What of a zipped model folder becomes the model (see :func:`plan_model_archive`)."""

    files: list[ArchiveMember]
    """The model's files, their paths inside the model folder (the zip's top folder dropped)."""
    left_out: list[str]
    """Other files (README.md, images…), as the zip names them: not part of the model, never unpacked."""
    folder: str
    """The one top folder the zip wrapped the model in, or ""."""


def plan_model_archive(members: Sequence[ArchiveMember], label: str) -> ModelArchive:
    """Decide from a zip's listing alone (nothing inflated) whether it can hold a model, and which files.

    The zip holds a Hugging Face folder (config.json, tokenizer files, ``.safetensors`` weights and
    their index) or a GGUF file, at its top or inside one folder (dropped). Pickle checkpoints
    anywhere in it refuse the whole zip (:class:`PickleCheckpointError`, never opened); files that
    are not model files (:data:`MODEL_FILE_SUFFIXES`) are left out. The headers themselves are
    checked by :func:`inspect_model` once the files are unpacked.
    """

    def suffix(member: ArchiveMember) -> str:
        return PurePosixPath(member.path).suffix.lower()

    folder, members = strip_top_folder(members)
    pickles = [m.path for m in members if suffix(m) in PICKLE_EXTENSIONS]
    if pickles:
        more = f" and {len(pickles) - 3} more" if len(pickles) > 3 else ""
        raise _pickle_refusal(
            label,
            f"the zip holds PyTorch pickle checkpoints ({', '.join(pickles[:3])}{more}); leave them out of the zip",
        )
    files = [m for m in members if suffix(m) in MODEL_FILE_SUFFIXES]
    left_out = [m.info.filename for m in members if suffix(m) not in MODEL_FILE_SUFFIXES]
    top = {m.path for m in files if "/" not in m.path}
    weights = [m.path for m in files if suffix(m) in (".safetensors", ".gguf")]
    if not weights:
        raise ModelFormatError(
            label, f"the zip holds no .safetensors or .gguf files: {_NO_WEIGHTS_ADVICE}, or a zip of one"
        )
    if not any("/" not in path for path in weights):
        raise ModelFormatError(
            label,
            f"the weights are in a subfolder ({weights[0]}): zip the folder that holds config.json and the weights, "
            "so that they are at the top of the zip (or inside one folder)",
        )
    if any(path.endswith(".safetensors") for path in weights) and "config.json" not in top:
        nested = [m.path for m in files if m.path.endswith("/config.json")]
        if nested:
            raise ModelFormatError(
                label,
                f"missing config.json at the top of the zip (there is {nested[0]}): zip the model's folder itself",
            )
        raise _missing_config(label, top)
    return ModelArchive(files, left_out, folder)


def hash_tensors(
    info: ModelInfo, progress: ProgressCallback | None = None, *, chunk_size: int = HASH_CHUNK_BYTES
) -> ModelInfo:
    """Return ``info`` with the SHA-256 of every tensor's bytes, streamed in ``chunk_size`` reads.

    Memory stays at one chunk whatever the model's size. Files are read in offset order, so the
    disk sees one sequential pass. ``progress(done_bytes, total_bytes)`` is called at the start,
    about once per chunk, and at the end.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    total = info.n_bytes
    done = reported = 0
    if progress:
        progress(0, total)
    buffer = memoryview(bytearray(chunk_size))
    digests: dict[str, str] = {}
    by_file: dict[str, list[TensorRecord]] = defaultdict(list)
    for record in info.tensors:
        by_file[record.file].append(record)
    for file_name, records in by_file.items():
        with (info.folder / file_name).open("rb", buffering=0) as handle:
            for record in sorted(records, key=lambda r: r.offset):
                handle.seek(record.offset)
                digest = hashlib.sha256()
                left = record.n_bytes
                while left:
                    got = handle.readinto(buffer[: min(chunk_size, left)])
                    if not got:
                        raise ModelFormatError(
                            file_name,
                            f"the file ended inside tensor {record.name!r} while hashing: it changed or was truncated after it was inspected; upload it again",
                        )
                    digest.update(buffer[:got])
                    left -= got
                    done += got
                    if progress and done - reported >= chunk_size:
                        progress(done, total)
                        reported = done
                digests[record.name] = digest.hexdigest()
    if progress and reported != total:
        progress(total, total)
    return replace(info, tensors=tuple(replace(t, sha256=digests[t.name]) for t in info.tensors))


# --------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True)
class ModelComparison:
    """What two inventories share, tensor by tensor (by content hash) and layer by layer.

    Hashes compare stored bytes: the same weights in another dtype or quantisation — or a GGUF
    against its source safetensors, since the converter permutes Q/K rows — do not match.
    """

    params_a: int
    """Parameter count of model A."""
    params_b: int
    """Parameter count of model B."""
    bytes_a: int
    """Tensor bytes of model A."""
    bytes_b: int
    """Tensor bytes of model B."""
    param_ratio: float | None
    """params_a / params_b (compression ratio when A is the teacher); None when B has no parameters."""
    byte_ratio: float | None
    """bytes_a / bytes_b; None when B has no bytes."""
    shared_tensors: int
    """Tensors of A whose exact bytes also occur in B (each B tensor matched at most once)."""
    shared_params: int
    """Parameters in those shared tensors (counted on A's side)."""
    shared_bytes: int
    """Bytes in those shared tensors."""
    layers_a: int
    """Number of transformer blocks in A."""
    layers_b: int
    """Number of transformer blocks in B."""
    shared_layer_pairs: tuple[tuple[int, int], ...]
    """(layer of A, layer of B) whose tensors match one for one by component and hash, sorted."""
    components: dict[str, dict[str, int]]
    """Per component: parameters in A (``a``), in B (``b``) and ``difference`` = a - b."""

    def __post_init__(self) -> None:
        if self.shared_tensors < 0 or self.shared_params > self.params_a or self.shared_bytes > self.bytes_a:
            raise ValueError("shared totals cannot exceed model A's totals")

    @property
    def shared_layers(self) -> int:
        """Layers of A that have an identical counterpart in B."""
        return len({a for a, _ in self.shared_layer_pairs})

    def as_dict(self) -> dict[str, Any]:
        return {
            "params_a": self.params_a,
            "params_b": self.params_b,
            "bytes_a": self.bytes_a,
            "bytes_b": self.bytes_b,
            "param_ratio": self.param_ratio,
            "byte_ratio": self.byte_ratio,
            "shared_tensors": self.shared_tensors,
            "shared_params": self.shared_params,
            "shared_bytes": self.shared_bytes,
            "layers_a": self.layers_a,
            "layers_b": self.layers_b,
            "shared_layers": self.shared_layers,
            "shared_layer_pairs": [list(pair) for pair in self.shared_layer_pairs],
            "components": {k: dict(v) for k, v in self.components.items()},
        }


def compare_models(a: ModelInfo, b: ModelInfo) -> ModelComparison:
    """Compare two hashed inventories (e.g. a teacher and a student built from it)."""
    for side, info in (("A", a), ("B", b)):
        if not info.hashed:
            raise ValueError(
                f"model {side} ({Path(info.path).name}) has no tensor hashes: inspect it with with_hashes=True or call hash_tensors first"
            )
    return compare_tensors(a.tensors, b.tensors)


def compare_tensors(a: Sequence[TensorRecord], b: Sequence[TensorRecord]) -> ModelComparison:
    """Compare two hashed tensor inventories (as stored rows or fresh from :func:`inspect_model`)."""
    available = Counter(t.sha256 for t in b)
    shared = []
    for tensor in a:
        if available[tensor.sha256] > 0:
            available[tensor.sha256] -= 1
            shared.append(tensor)

    def signatures(tensors: Sequence[TensorRecord]) -> dict[int, tuple[tuple[str, str], ...]]:
        layers: dict[int, list[TensorRecord]] = defaultdict(list)
        for t in tensors:
            if t.layer is not None:
                layers[t.layer].append(t)
        return {layer: tuple(sorted((t.component, t.sha256 or "") for t in ts)) for layer, ts in layers.items()}

    sig_a, sig_b = signatures(a), signatures(b)
    layers_of_b: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for layer, signature in sig_b.items():
        layers_of_b[signature].append(layer)
    pairs = tuple(sorted((la, lb) for la, signature in sig_a.items() for lb in layers_of_b.get(signature, [])))

    components: dict[str, dict[str, int]] = {}
    for component in COMPONENTS:
        in_a = sum(t.n_params for t in a if t.component == component)
        in_b = sum(t.n_params for t in b if t.component == component)
        if in_a or in_b:
            components[component] = {"a": in_a, "b": in_b, "difference": in_a - in_b}

    params_a, params_b = sum(t.n_params for t in a), sum(t.n_params for t in b)
    bytes_a, bytes_b = sum(t.n_bytes for t in a), sum(t.n_bytes for t in b)
    return ModelComparison(
        params_a=params_a,
        params_b=params_b,
        bytes_a=bytes_a,
        bytes_b=bytes_b,
        param_ratio=params_a / params_b if params_b else None,
        byte_ratio=bytes_a / bytes_b if bytes_b else None,
        shared_tensors=len(shared),
        shared_params=sum(t.n_params for t in shared),
        shared_bytes=sum(t.n_bytes for t in shared),
        layers_a=len(sig_a),
        layers_b=len(sig_b),
        shared_layer_pairs=pairs,
        components=components,
    )
