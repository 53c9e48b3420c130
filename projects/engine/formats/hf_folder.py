"""Hugging Face folders: config, shard index, side files, chat template, the llama structure check."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ModelFormatError, _pickle_refusal
from .gguf import _as_int, _capabilities, _llama_structure_problem
from .limits import (
    _MAX_CHAT_TEMPLATE,
    _MAX_JSON_SIDE_FILE,
    _SHARD_NAME,
    HF_INDEX_NAME,
    LLAMA_HF_ARCHITECTURES,
    LLAMA_HF_MODEL_TYPES,
    PICKLE_EXTENSIONS,
)
from .records import ModelInfo, TensorEntry
from .safetensors import _read_safetensors_header


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
            "missing config.json; this looks like a LoRA adapter (adapter_config.json), not a full model: merge it "
            "into its base model (peft's merge_and_unload) and upload the merged model",
        )
    return ModelFormatError(
        label,
        "missing config.json: a Hugging Face model folder needs config.json (architecture and sizes); upload the "
        "whole folder as written by save_pretrained",
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
            f"found {len(safetensor_files)} .safetensors files but no {HF_INDEX_NAME}: upload the index file saved "
            "alongside the shards",
        )

    records: list[TensorEntry] = []
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
                f"tensor {record.name!r} is stored twice, in {seen[record.name]} and {record.file}: the shards are "
                "inconsistent; re-save the model",
            )
        seen[record.name] = record.file
    if expected is not None:
        for tensor, shard in expected.items():
            if seen.get(tensor) != shard:
                where = f"it is in {seen[tensor]}" if tensor in seen else "no shard contains it"
                raise ModelFormatError(
                    label,
                    f"{HF_INDEX_NAME} says tensor {tensor!r} is in {shard}, but {where}: the index and shards do not "
                    "match; upload the complete folder again",
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
                f"shard {path.name} is in the folder but {HF_INDEX_NAME} never references it: the index and shards "
                "come from different saves; upload a consistent folder",
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
                f"{HF_INDEX_NAME} never references {missing} of the {int(total)}-shard series: the index is "
                "incomplete; upload the index saved with these shards",
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
                f"chat_template.jinja is larger than {_MAX_CHAT_TEMPLATE} bytes, far more than a chat template needs; "
                "fix or remove it",
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
    records: list[TensorEntry],
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
            problem = (
                "the folder has no tokenizer (tokenizer.json or tokenizer.model), which analysis needs to read a "
                "dataset; upload it with the model"
            )
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
