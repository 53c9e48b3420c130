"""GGUF files: the bounded header reader (gguf-py's GGUFReader trusts array counts), tensor entries, capabilities."""

from __future__ import annotations

import math
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from projects.engine.tensor_names import LLAMA_BLOCK_COMPONENTS, classify_tensor

from .errors import ModelFormatError
from .limits import (
    _MAX_CHAT_TEMPLATE,
    _MAX_KEPT_ARRAY,
    _MAX_KEPT_STRING,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_MAX_DIMS,
    GGUF_SUPPORTED_VERSIONS,
    LEGACY_GGML_MAGICS,
    LLAMA_CPP_ARCHITECTURES,
    LLAMA_GGUF_ARCHITECTURES,
)
from .reader import _BoundedReader
from .records import Capabilities, ModelInfo, TensorEntry
from .sniff import _describe_head, _kind_from_head, _refuse_pickled_content

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
                else "the file is newer than this server understands: re-export it as GGUF v3 or ask an operator to "
                "upgrade"
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
                    f"tensor {name!r} has {n_dims} dimensions; GGUF allows at most {GGUF_MAX_DIMS}: the file is "
                    "corrupt",
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
) -> list[TensorEntry]:
    """Validate each tensor info against the file and turn it into a record (PyTorch shape order)."""
    names = Counter(info.name for info in infos)
    duplicate = next((name for name, count in names.items() if count > 1), None)
    if duplicate is not None:
        raise ModelFormatError(
            label, f"tensor {duplicate!r} appears {names[duplicate]} times in the header: the file is corrupt"
        )
    records: list[TensorEntry] = []
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
                f"tensor {info.name!r} data offset {info.relative_offset} is not aligned to {alignment} bytes: the "
                "file is corrupt",
            )
        offset = data_start + info.relative_offset
        if offset + n_bytes > size:
            raise ModelFormatError(
                label,
                f"tensor {info.name!r} ({qtype.name}, {n_bytes} bytes) lies at bytes {offset}-{offset + n_bytes} "
                f"but the file is only {size} bytes: the file is truncated (an interrupted upload?) or corrupt; "
                "upload it again",
            )
        layer, component = classify_tensor(info.name)
        records.append(
            TensorEntry(
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


def _check_no_overlap(label: str, records: Iterable[TensorEntry]) -> None:
    previous: TensorEntry | None = None
    for record in sorted(records, key=lambda r: (r.offset, r.n_bytes)):
        if previous is not None and record.offset < previous.offset + previous.n_bytes and record.n_bytes:
            raise ModelFormatError(
                label,
                f"tensors {previous.name!r} and {record.name!r} overlap (bytes {previous.offset}-"
                f"{previous.offset + previous.n_bytes} and {record.offset}-{record.offset + record.n_bytes}): the "
                "file is corrupt",
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
    architecture: str, has_tokenizer: bool, records: list[TensorEntry], block_count: int | None, expert_count: int
) -> Capabilities:
    reasons: dict[str, str] = {}
    if architecture == "clip":
        reasons["chat"] = (
            "this is a multimodal projector (mmproj, architecture 'clip'), not a language model; upload the language "
            "model's GGUF"
        )
    elif architecture not in LLAMA_CPP_ARCHITECTURES:
        reasons["chat"] = (
            f"architecture {architecture!r} is not one llama.cpp knows (per the installed gguf library); "
            "upload a GGUF of a supported architecture"
        )
    elif not has_tokenizer:
        reasons["chat"] = (
            "the GGUF has no tokenizer (tokenizer.ggml.tokens); re-convert it with llama.cpp's convert_hf_to_gguf.py "
            "from a folder that includes the tokenizer files"
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
            f"this is a mixture-of-experts model ({expert_count} experts); analysis and distillation need a dense "
            "llama model"
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


def _llama_structure_problem(records: list[TensorEntry], block_count: int | None) -> str | None:
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
