"""Constants every reader shares: the phases, what a model folder keeps, the bounds on headers and metadata."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from gguf import MODEL_ARCH_NAMES

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
