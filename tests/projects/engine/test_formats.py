"""The model-file engine on tiny real models: inventories, hashes, comparison, and every refusal."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import struct
import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import quantize

from projects.engine.formats import (
    COMPONENTS,
    ModelFormatError,
    ModelInfo,
    PickleCheckpointError,
    UnsupportedModelError,
    compare_models,
    detect_format,
    hash_tensors,
    inspect_model,
)
from projects.engine.tensor_names import classify_tensor
from tests.support.tiny_models import (
    TINY_CHAT_TEMPLATE,
    TinyLlamaConfig,
    gguf_tensors,
    llama_weights,
    write_gguf_llama,
    write_hf_llama,
)

CONFIG = TinyLlamaConfig(n_layers=3)
ENGINE = Path(__file__).resolve().parents[3] / "projects" / "engine"


def region_sha256(path: Path, offset: int, length: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    assert len(data) == length
    return hashlib.sha256(data).hexdigest()


def write_raw_safetensors(path: Path, header: dict, data: bytes, *, header_len: int | None = None) -> Path:
    """A hand-made safetensors file: 8-byte little-endian header length, JSON header, data."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return path


def folder_with_config(tmp_path: Path, **config_overrides) -> Path:
    """A folder with a valid llama config.json (for single-file safetensors tests)."""
    folder = tmp_path / "model"
    folder.mkdir()
    write_hf_llama(folder, CONFIG, shards=1)
    (folder / "model.safetensors").unlink()
    if config_overrides:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **config_overrides}))
    return folder


def raises(match_parts: list[str], call, *args, error=ModelFormatError, **kwargs) -> str:
    """Call and return the error message, checking it contains every expected part."""
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    message = str(info.value)
    for part in match_parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------------------
# Naming


@pytest.mark.parametrize(
    ("name", "layer", "component"),
    [
        ("blk.0.attn_q.weight", 0, "attn_q"),
        ("blk.1.attn_k.weight", 1, "attn_k"),
        ("blk.2.attn_v.weight", 2, "attn_v"),
        ("blk.12.attn_output.weight", 12, "attn_o"),
        ("blk.3.ffn_gate.weight", 3, "mlp_gate"),
        ("blk.3.ffn_up.weight", 3, "mlp_up"),
        ("blk.3.ffn_down.weight", 3, "mlp_down"),
        ("blk.3.attn_norm.weight", 3, "norm"),
        ("blk.3.ffn_norm.weight", 3, "norm"),
        ("blk.3.attn_q.bias", 3, "attn_q"),
        ("blk.3.ffn_gate_exps.weight", 3, "other"),
        ("token_embd.weight", None, "embedding"),
        ("output_norm.weight", None, "norm"),
        ("output.weight", None, "output_head"),
        ("rope_freqs.weight", None, "other"),
        ("model.layers.4.self_attn.q_proj.weight", 4, "attn_q"),
        ("model.layers.4.self_attn.k_proj.weight", 4, "attn_k"),
        ("model.layers.4.self_attn.v_proj.weight", 4, "attn_v"),
        ("model.layers.4.self_attn.o_proj.weight", 4, "attn_o"),
        ("model.layers.4.mlp.gate_proj.weight", 4, "mlp_gate"),
        ("model.layers.4.mlp.up_proj.weight", 4, "mlp_up"),
        ("model.layers.4.mlp.down_proj.weight", 4, "mlp_down"),
        ("model.layers.4.input_layernorm.weight", 4, "norm"),
        ("model.layers.4.post_attention_layernorm.weight", 4, "norm"),
        ("model.layers.4.self_attn.rotary_emb.inv_freq", 4, "other"),
        ("model.embed_tokens.weight", None, "embedding"),
        ("model.norm.weight", None, "norm"),
        ("lm_head.weight", None, "output_head"),
        ("transformer.h.0.attn.c_attn.weight", None, "other"),
    ],
)
def test_tensor_names_map_to_layer_and_component(name, layer, component):
    role = classify_tensor(name)
    assert (role.layer, role.component) == (layer, component)
    assert role.component in COMPONENTS


# ------------------------------------------------------------------------------------------
# GGUF inventory


@pytest.mark.parametrize("tensor_type", ["F32", "F16", "Q8_0"])
def test_gguf_inventory_of_a_tiny_llama(tmp_path, tensor_type):
    weights = llama_weights(CONFIG, seed=1)
    path = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG, weights, tensor_type=tensor_type, name="tiny test llama")
    info = inspect_model(path, with_hashes=True)

    assert info.format == "gguf" and info.gguf_version == 3
    assert (info.architecture, info.name) == ("llama", "tiny test llama")
    assert info.block_count == 3 and info.embedding_length == 64
    assert (info.head_count, info.head_count_kv, info.feed_forward_length) == (4, 2, 128)
    assert info.context_length == 128 and info.vocab_size == CONFIG.vocab_size
    assert info.chat_template == TINY_CHAT_TEMPLATE
    assert info.file_type == {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0"}[tensor_type]
    assert info.capabilities.as_dict() == {"chat": True, "analysis": True, "distillation": True, "reasons": {}}
    assert info.metadata["llama.attention.layer_norm_rms_epsilon"] == 1e-5
    assert info.metadata["tokenizer.ggml.tokens"] == {
        "type": "array",
        "item_type": "STRING",
        "length": CONFIG.vocab_size,
    }

    # Every tensor: layer and component, PyTorch-order shape, the type it was written in.
    assert sorted(info.layers()) == [0, 1, 2]
    for _layer, tensors in info.layers().items():
        assert sorted(t.component for t in tensors) == sorted(
            ["attn_q", "attn_k", "attn_v", "attn_o", "mlp_gate", "mlp_up", "mlp_down", "norm", "norm"]
        )
    by_name = {t.name: t for t in info.tensors}
    assert by_name["token_embd.weight"].shape == (CONFIG.vocab_size, 64)
    assert by_name["token_embd.weight"].component == "embedding"
    assert by_name["output.weight"].component == "output_head"
    assert by_name["output_norm.weight"].component == "norm" and by_name["output_norm.weight"].layer is None
    assert by_name["blk.0.attn_q.weight"].shape == (4 * 16, 64)
    assert by_name["blk.0.attn_k.weight"].shape == (2 * 16, 64)
    assert by_name["blk.2.ffn_down.weight"].shape == (64, 128)
    assert by_name["blk.2.ffn_gate.weight"].shape == (128, 64)
    assert by_name["blk.1.attn_norm.weight"].dtype == "F32"
    assert by_name["blk.1.ffn_up.weight"].dtype == tensor_type
    expected_counts = {"F32": 1 + 3 * 9 + 2}  # every tensor F32
    assert (
        info.quant_types == expected_counts if tensor_type == "F32" else info.quant_types == {"F32": 7, tensor_type: 23}
    )

    # Parameter counts are the weights' sizes and sum to the total.
    assert info.n_params == sum(w.size for w in weights.values()) == sum(t.n_params for t in info.tensors)
    assert all(t.n_params == math.prod(t.shape) for t in info.tensors)

    # Offsets lie inside the file; each hash is hashlib over exactly that region, and that
    # region holds exactly the bytes the writer was given (so the offset is the right one).
    size = path.stat().st_size
    written = gguf_tensors(CONFIG, weights)
    for tensor in info.tensors:
        assert 0 < tensor.offset and tensor.offset + tensor.n_bytes <= size
        assert tensor.offset % 32 == 0
        assert tensor.sha256 == region_sha256(path, tensor.offset, tensor.n_bytes)
        source = written[tensor.name]
        if source.ndim == 1 or tensor_type == "F32":
            expected = source.astype(np.float32).tobytes()
        elif tensor_type == "F16":
            expected = source.astype(np.float16).tobytes()
        else:
            expected = quantize(source, gguf.GGMLQuantizationType.Q8_0).tobytes()
        assert tensor.sha256 == hashlib.sha256(expected).hexdigest(), tensor.name


def test_gguf_inventory_agrees_with_gguf_reader(tmp_path):
    path = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG, tensor_type="Q8_0")
    info = inspect_model(path)
    reader = gguf.GGUFReader(path)
    assert len(reader.tensors) == len(info.tensors)
    for theirs, ours in zip(reader.tensors, info.tensors, strict=False):
        assert ours.name == theirs.name
        assert ours.offset == theirs.data_offset
        assert ours.n_bytes == theirs.n_bytes
        assert ours.n_params == theirs.n_elements
        assert ours.dtype == theirs.tensor_type.name
        assert ours.shape == tuple(reversed(theirs.shape.tolist()))  # GGUF dims are reversed
    assert all(t.sha256 is None for t in info.tensors) and not info.hashed


def test_gguf_tied_embeddings_and_folder_upload(tmp_path):
    config = TinyLlamaConfig(tie_word_embeddings=True)
    folder = tmp_path / "upload"
    folder.mkdir()
    write_gguf_llama(folder / "tied.gguf", config)
    info = inspect_model(folder)  # a folder holding one GGUF is that GGUF
    assert info.files == ("tied.gguf",)
    assert not any(t.component == "output_head" for t in info.tensors)
    assert info.capabilities.analysis


# ------------------------------------------------------------------------------------------
# safetensors inventory


def test_sharded_safetensors_inventory(tmp_path):
    weights = llama_weights(CONFIG, seed=2)
    folder = write_hf_llama(tmp_path / "tiny-hf", CONFIG, weights, shards=2)
    info = inspect_model(folder, with_hashes=True)

    assert info.format == "safetensors"
    assert info.files == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert (info.architecture, info.model_type) == ("LlamaForCausalLM", "llama")
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (3, 64, 4, 2)
    assert (info.feed_forward_length, info.context_length, info.vocab_size) == (128, 128, CONFIG.vocab_size)
    assert info.chat_template == TINY_CHAT_TEMPLATE
    assert info.file_type == "float32" and info.quant_types == {"F32": len(weights)}
    assert info.capabilities.analysis and info.capabilities.distillation
    assert not info.capabilities.chat and "GGUF" in info.capabilities.reasons["chat"]
    assert info.metadata["config"]["architectures"] == ["LlamaForCausalLM"]
    assert info.metadata["safetensors_metadata"]["model-00001-of-00002.safetensors"] == {"format": "pt"}
    assert info.warnings == ()

    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert {t.name: t.file for t in info.tensors} == index
    assert len({t.file for t in info.tensors}) == 2
    assert sorted(info.layers()) == [0, 1, 2]
    assert info.n_params == sum(w.size for w in weights.values())
    assert info.n_bytes == sum(w.nbytes for w in weights.values())
    for tensor in info.tensors:
        assert tensor.shape == weights[tensor.name].shape  # already PyTorch order
        assert tensor.dtype == "F32"
        assert tensor.component == classify_tensor(tensor.name).component
        shard = folder / tensor.file
        assert 8 < tensor.offset and tensor.offset + tensor.n_bytes <= shard.stat().st_size
        assert tensor.sha256 == region_sha256(shard, tensor.offset, tensor.n_bytes)
        assert tensor.sha256 == hashlib.sha256(weights[tensor.name].tobytes()).hexdigest()
    by_name = {t.name: t for t in info.tensors}
    assert by_name["model.layers.1.mlp.gate_proj.weight"].component == "mlp_gate"
    assert by_name["model.layers.1.post_attention_layernorm.weight"].component == "norm"
    assert by_name["lm_head.weight"].component == "output_head"


def test_single_file_safetensors_folder_and_lone_file(tmp_path):
    weights = llama_weights(CONFIG, seed=3)
    folder = write_hf_llama(tmp_path / "one", CONFIG, weights, shards=1, dtype=np.float16)
    from_folder = inspect_model(folder)
    from_file = inspect_model(folder / "model.safetensors")  # config.json is read from beside it
    assert from_folder.files == from_file.files == ("model.safetensors",)
    assert from_folder.tensors == from_file.tensors
    assert from_folder.quant_types == {"F16": len(weights)} and from_folder.file_type == "float16"
    assert from_folder.n_bytes == sum(w.size * 2 for w in weights.values())


def test_hashing_streams_in_chunks_and_reports_progress(tmp_path):
    path = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG)
    info = inspect_model(path)
    calls: list[tuple[int, int]] = []
    small_chunks = hash_tensors(info, lambda done, total: calls.append((done, total)), chunk_size=4096)
    assert small_chunks == hash_tensors(info)
    assert calls[0] == (0, info.n_bytes) and calls[-1] == (info.n_bytes, info.n_bytes)
    assert len(calls) > 10 and all(a[0] <= b[0] for a, b in zip(calls, calls[1:], strict=False))


def test_inventory_round_trips_through_json(tmp_path):
    info = inspect_model(write_hf_llama(tmp_path / "hf", CONFIG), with_hashes=True)
    data = json.loads(json.dumps(info.as_dict()))
    assert data["n_params"] == info.n_params and data["capabilities"]["chat"] is False
    assert ModelInfo.from_dict(data) == info


# ------------------------------------------------------------------------------------------
# Comparison


def test_comparison_of_a_teacher_and_a_student_sharing_layers(tmp_path):
    teacher_weights = llama_weights(CONFIG, seed=10)
    fresh = llama_weights(CONFIG, seed=11)  # a source of different tensors
    student_config = TinyLlamaConfig(n_layers=2)
    # Student: its layer 0 is the teacher's layer 2 verbatim; its layer 1 is the teacher's layer 0
    # with a retrained down projection; embedding and final norm copied; output head retrained.
    student_weights = {"model.embed_tokens.weight": teacher_weights["model.embed_tokens.weight"]}
    for student_layer, teacher_layer in ((0, 2), (1, 0)):
        prefix = f"model.layers.{teacher_layer}."
        for name, weight in teacher_weights.items():
            if name.startswith(prefix):
                student_weights[name.replace(prefix, f"model.layers.{student_layer}.")] = weight
    student_weights["model.layers.1.mlp.down_proj.weight"] = fresh["model.layers.0.mlp.down_proj.weight"]
    student_weights["model.norm.weight"] = teacher_weights["model.norm.weight"]
    student_weights["lm_head.weight"] = fresh["lm_head.weight"]

    teacher = inspect_model(write_gguf_llama(tmp_path / "teacher.gguf", CONFIG, teacher_weights), with_hashes=True)
    student = inspect_model(
        write_gguf_llama(tmp_path / "student.gguf", student_config, student_weights), with_hashes=True
    )
    result = compare_models(teacher, student)

    teacher_params = sum(w.size for w in teacher_weights.values())
    student_params = sum(w.size for w in student_weights.values())
    assert (result.params_a, result.params_b) == (teacher_params, student_params)
    assert result.param_ratio == pytest.approx(teacher_params / student_params)
    assert result.byte_ratio == pytest.approx((teacher_params * 4) / (student_params * 4))  # all F32
    # embedding + final norm + 9 tensors of teacher layer 2 + 8 of teacher layer 0
    assert result.shared_tensors == 1 + 1 + 9 + 8
    down = 64 * 128
    layer_params = sum(w.size for n, w in teacher_weights.items() if n.startswith("model.layers.0."))
    expected_shared = teacher_weights["model.embed_tokens.weight"].size + 64 + layer_params + (layer_params - down)
    assert result.shared_params == expected_shared
    assert result.shared_bytes == expected_shared * 4
    assert result.shared_layer_pairs == ((2, 0),)
    assert (result.layers_a, result.layers_b, result.shared_layers) == (3, 2, 1)
    assert result.components["mlp_down"] == {"a": 3 * down, "b": 2 * down, "difference": down}
    assert result.components["embedding"]["difference"] == 0
    assert result.components["output_head"] == {"a": 288 * 64, "b": 288 * 64, "difference": 0}
    assert sum(c["a"] for c in result.components.values()) == teacher_params

    as_json = json.loads(json.dumps(result.as_dict()))
    assert as_json["shared_layer_pairs"] == [[2, 0]] and as_json["shared_layers"] == 1

    # Identical models share everything, layer for layer.
    same = compare_models(teacher, teacher)
    assert same.shared_tensors == len(teacher.tensors) and same.param_ratio == 1.0
    assert same.shared_layer_pairs == ((0, 0), (1, 1), (2, 2))


def test_comparison_needs_hashes(tmp_path):
    info = inspect_model(write_gguf_llama(tmp_path / "a.gguf", CONFIG))
    raises(["no tensor hashes", "with_hashes=True"], compare_models, info, info, error=ValueError)


# ------------------------------------------------------------------------------------------
# Format detection


def test_detect_format_by_content_not_name(tmp_path):
    gguf_path = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG)
    disguised = tmp_path / "blob-without-extension"
    disguised.write_bytes(gguf_path.read_bytes())
    hf = write_hf_llama(tmp_path / "hf", CONFIG, shards=1)
    pickled = tmp_path / "model.safetensors"
    pickled.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    zipped = tmp_path / "weights.gguf"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": 1}))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    assert detect_format(gguf_path) == "gguf"
    assert detect_format(disguised) == "gguf"
    assert detect_format(hf / "model.safetensors") == "safetensors"
    assert detect_format(hf) == "safetensors"
    assert detect_format(pickled) == "pickle"
    assert detect_format(zipped) == "zip"
    assert detect_format(text) == "unknown"
    assert detect_format(empty) == "unknown"
    assert inspect_model(disguised, original_name="upload.gguf").format == "gguf"


# ------------------------------------------------------------------------------------------
# Refusals: every message names the file and says what to do


@pytest.mark.parametrize("name", ["model.gguf", "model.safetensors", "upload"])
def test_empty_file_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    raises([name, "empty (0 bytes)", "upload it again"], inspect_model, path)


def test_gguf_truncated_in_tensor_data(tmp_path):
    path = write_gguf_llama(tmp_path / "cut.gguf", CONFIG)
    last = inspect_model(path).tensors[-1]
    data = path.read_bytes()
    path.write_bytes(data[: last.offset + last.n_bytes // 2])
    raises(["cut.gguf", f"tensor {last.name!r}", "truncated", "upload it again"], inspect_model, path)


@pytest.mark.parametrize(
    ("cut_at", "expected"),
    [
        (20, "the file ends at byte 20 while reading the metadata count"),
        (300, "metadata entries and 30 tensors, more than a 300-byte file can hold"),
        (3000, "the file ends at byte 3000 while reading"),  # inside the token list
    ],
)
def test_gguf_truncated_in_header(tmp_path, cut_at, expected):
    path = write_gguf_llama(tmp_path / "cut.gguf", CONFIG)
    path.write_bytes(path.read_bytes()[:cut_at])
    raises(["cut.gguf", expected, "truncated or corrupt", "upload it again"], inspect_model, path)


def test_gguf_wrong_magic(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGML" + bytes(60))
    raises(
        ["model.gguf", "not a GGUF file: expected magic GGUF, found b'GGML", "convert_hf_to_gguf.py"],
        inspect_model,
        path,
    )
    path.write_bytes(b"tjgg" + bytes(60))  # llama.cpp's pre-GGUF "ggjt" container
    raises(["legacy ggjt", "convert_llama_ggml_to_gguf.py"], inspect_model, path)


@pytest.mark.parametrize(("version", "advice"), [(1, "early 2023"), (99, "newer than this server")])
def test_gguf_unsupported_version(tmp_path, version, advice):
    path = write_gguf_llama(tmp_path / "old.gguf", CONFIG)
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", version)
    path.write_bytes(bytes(data))
    raises(["old.gguf", f"unsupported GGUF version {version} (supported: 2 and 3)", advice], inspect_model, path)


def test_gguf_big_endian_is_explained(tmp_path):
    path = write_gguf_llama(tmp_path / "be.gguf", CONFIG)
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack(">I", 3)
    path.write_bytes(bytes(data))
    raises(["big-endian"], inspect_model, path)


def test_gguf_absurd_array_length_fails_fast(tmp_path):
    # gguf.GGUFReader loops for ever on this 49-byte file; the engine must not.
    path = tmp_path / "evil.gguf"
    path.write_bytes(
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"a" + struct.pack("<IIQ", 9, 0, 2**40)
    )
    raises(["evil.gguf", "1099511627776 items of 'a'", "truncated or corrupt"], inspect_model, path)


def test_split_gguf_part_is_explained(tmp_path):
    path = tmp_path / "part.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_uint16("split.no", 0)
    writer.add_uint16("split.count", 3)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    raises(["part 1 of a 3-part split GGUF", "llama-gguf-split --merge"], inspect_model, path)


def test_safetensors_header_length_beyond_file(tmp_path):
    folder = folder_with_config(tmp_path)
    path = write_raw_safetensors(
        folder / "model.safetensors",
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
        bytes(4),
        header_len=10**9,
    )
    raises(
        ["model.safetensors", "header length field says 1000000000 bytes", "truncated or not safetensors"],
        inspect_model,
        path,
    )


def test_safetensors_tensor_out_of_bounds(tmp_path):
    folder = folder_with_config(tmp_path)
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [256], "data_offsets": [8, 1032]},
    }
    path = write_raw_safetensors(folder / "model.safetensors", header, bytes(100))
    raises(
        ["model.safetensors", "tensor 'b' data_offsets [8, 1032] point past the end", "100 bytes", "upload it again"],
        inspect_model,
        path,
    )


def test_safetensors_truncated_in_data(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-1000])
    raises(["model-00002-of-00002.safetensors", "point past the end of the data section"], inspect_model, folder)


def test_safetensors_shape_dtype_mismatch(tmp_path):
    folder = folder_with_config(tmp_path)
    header = {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}}
    path = write_raw_safetensors(folder / "model.safetensors", header, bytes(32))
    raises(["tensor 'w' has shape [4, 4] of F32", "= 64 bytes", "span 32 bytes"], inspect_model, path)


def test_safetensors_unknown_dtype(tmp_path):
    folder = folder_with_config(tmp_path)
    path = write_raw_safetensors(
        folder / "model.safetensors", {"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 2]}}, bytes(2)
    )
    raises(["tensor 'w' has unknown dtype 'Q7'", "BF16"], inspect_model, path)


@pytest.mark.parametrize(
    ("header", "data_len", "expected"),
    [
        (
            {
                "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]},
            },
            12,
            "overlap",
        ),
        (
            {
                "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                "b": {"dtype": "U8", "shape": [8], "data_offsets": [16, 24]},
            },
            24,
            "8 unused bytes before tensor 'b'",
        ),
        ({"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}, 20, "12 bytes after the last tensor"),
    ],
)
def test_safetensors_overlaps_and_gaps(tmp_path, header, data_len, expected):
    folder = folder_with_config(tmp_path)
    path = write_raw_safetensors(folder / "model.safetensors", header, bytes(data_len))
    raises([expected], inspect_model, path)


def test_safetensors_garbage_header(tmp_path):
    folder = folder_with_config(tmp_path)
    path = folder / "model.safetensors"
    raw = b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {}}'
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0")
    raises(["not valid JSON", "duplicate key 'w'"], inspect_model, path)


def test_index_referencing_a_missing_tensor(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.layers.7.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    raises(
        ["tensor 'model.layers.7.mlp.up_proj.weight' is in model-00001-of-00002.safetensors", "no shard contains it"],
        inspect_model,
        folder,
    )


def test_index_pointing_at_the_wrong_shard(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    raises(
        ["'lm_head.weight' is in model-00001-of-00002.safetensors, but it is in model-00002-of-00002.safetensors"],
        inspect_model,
        folder,
    )


def test_index_referencing_a_missing_shard(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    raises(
        ["hf:", "references shard model-00002-of-00002.safetensors, which is not in the folder", "upload every shard"],
        inspect_model,
        folder,
    )


def test_shard_the_index_never_references(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v.startswith("model-00001")}
    index_path.write_text(json.dumps(index))
    raises(["shard model-00002-of-00002.safetensors is in the folder", "never references it"], inspect_model, folder)


def test_index_shard_names_cannot_escape_the_folder(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["lm_head.weight"] = "../../etc/passwd"
    index_path.write_text(json.dumps(index))
    raises(["'../../etc/passwd', which is not a plain file name"], inspect_model, folder)


def test_index_missing_a_part_of_the_shard_series(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    for name, shard in index["weight_map"].items():  # claim a 3-shard series whose third part never appears
        index["weight_map"][name] = shard.replace("-of-00002", "-of-00003")
    index_path.write_text(json.dumps(index))
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (folder / shard).rename(folder / shard.replace("-of-00002", "-of-00003"))
    raises(["never references model-00003-of-00003.safetensors of the 3-shard series"], inspect_model, folder)


def test_shards_without_an_index(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    (folder / "model.safetensors.index.json").unlink()
    raises(["found 2 .safetensors files but no model.safetensors.index.json"], inspect_model, folder)


def test_missing_config_json(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    (folder / "config.json").unlink()
    raises(["hf:", "missing config.json", "save_pretrained"], inspect_model, folder)
    raises(["missing config.json"], inspect_model, folder / "model-00001-of-00002.safetensors")


def test_lora_adapter_is_explained(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    write_raw_safetensors(
        folder / "adapter_model.safetensors", {"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"
    )
    (folder / "adapter_config.json").write_text("{}")
    raises(["LoRA adapter", "merge_and_unload"], inspect_model, folder)


PICKLE_ADVICE = ["PyTorch pickle checkpoints can run code when loaded", "safe_serialization=True"]


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth", "last.ckpt", "weights.pkl"])
def test_pickle_checkpoints_refused_by_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00" * 64)  # the name alone is enough: the content is never looked at as a pickle
    raises([name, *PICKLE_ADVICE], inspect_model, path, error=PickleCheckpointError)


def test_pickle_checkpoints_refused_by_content(tmp_path):
    blob = tmp_path / "3f9a0c"
    blob.write_bytes(pickle.dumps({"model.embed_tokens.weight": [0.0] * 8}, protocol=4))
    raises(
        ["upload.dat", "the content is a Python pickle", *PICKLE_ADVICE],
        inspect_model,
        blob,
        original_name="upload.dat",
        error=PickleCheckpointError,
    )

    archive = tmp_path / "checkpoint"
    with zipfile.ZipFile(archive, "w") as handle:  # the layout torch.save writes
        handle.writestr("checkpoint/data.pkl", pickle.dumps({"w": 1}))
    raises(["zip archive", *PICKLE_ADVICE], inspect_model, archive, error=PickleCheckpointError)

    named_gguf = tmp_path / "model.gguf"
    named_gguf.write_bytes(pickle.dumps([1, 2, 3]))
    raises(
        ["model.gguf", "Python pickle despite the .gguf name", *PICKLE_ADVICE],
        inspect_model,
        named_gguf,
        error=PickleCheckpointError,
    )

    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)  # a "shard" that is really a pickle
    (folder / "model-00002-of-00002.safetensors").write_bytes(pickle.dumps({"w": 1}))
    raises(
        ["model-00002-of-00002.safetensors", "despite the .safetensors name", *PICKLE_ADVICE],
        inspect_model,
        folder,
        error=PickleCheckpointError,
    )


def test_bin_named_gguf_gets_rename_advice(tmp_path):
    path = write_gguf_llama(tmp_path / "model.bin", CONFIG)
    raises(["named .bin but holds GGUF data", "rename it to .gguf"], inspect_model, path)


def test_folder_of_pickles_is_refused(tmp_path):
    folder = tmp_path / "old-style"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": 1}))
    raises(["pytorch_model.bin", *PICKLE_ADVICE], inspect_model, folder, error=PickleCheckpointError)


def test_pickles_beside_safetensors_are_ignored_not_opened(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    (folder / "pytorch_model.bin").write_bytes(b"this would be a pickle")
    info = inspect_model(folder)
    assert any("pytorch_model.bin" in w and "never opened" in w for w in info.warnings)


def test_unknown_content(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("not a model")
    raises(["readme.txt", "not a GGUF or safetensors file", "upload a GGUF file"], inspect_model, path)


# ------------------------------------------------------------------------------------------
# Capabilities


def test_gguf_of_another_architecture_is_chat_only(tmp_path):
    info = inspect_model(write_gguf_llama(tmp_path / "gpt2.gguf", CONFIG, architecture="gpt2"))
    assert info.architecture == "gpt2" and info.block_count == 3  # keys read under the gpt2 prefix
    assert info.capabilities.chat
    assert not info.capabilities.analysis and not info.capabilities.distillation
    assert "architecture 'gpt2' is not llama-family" in info.capabilities.reasons["analysis"]
    assert "chat only" in info.capabilities.reasons["analysis"]
    info.require("chat")
    raises(
        ["gpt2.gguf: cannot be used for analysis", "general.architecture 'llama'"],
        info.require,
        "analysis",
        error=UnsupportedModelError,
    )


def test_gguf_of_an_architecture_llama_cpp_does_not_know(tmp_path):
    info = inspect_model(write_gguf_llama(tmp_path / "odd.gguf", CONFIG, architecture="frobnicator"))
    assert info.capabilities.as_dict()["chat"] is False
    assert "'frobnicator' is not one llama.cpp knows" in info.capabilities.reasons["chat"]


def test_incomplete_llama_is_not_analysable(tmp_path):
    weights = llama_weights(CONFIG)
    del weights["model.layers.1.mlp.gate_proj.weight"]
    info = inspect_model(write_gguf_llama(tmp_path / "holey.gguf", CONFIG, weights))
    assert info.capabilities.chat and not info.capabilities.analysis
    assert (
        info.capabilities.reasons["analysis"] == "layer 1 lacks mlp_gate tensors, so it is not a standard llama block"
    )


def test_safetensors_of_another_architecture_is_refused_for_analysis(tmp_path):
    folder = write_hf_llama(tmp_path / "gpt2-hf", CONFIG, architecture="GPT2LMHeadModel", model_type="gpt2")
    info = inspect_model(folder)
    assert info.capabilities.as_dict()["chat"] is False
    assert not info.capabilities.analysis and not info.capabilities.distillation
    reason = info.capabilities.reasons["analysis"]
    assert "GPT2LMHeadModel (model_type 'gpt2') is not supported" in reason and "LlamaForCausalLM" in reason
    raises(
        ["gpt2-hf: cannot be used for analysis", "GPT2LMHeadModel"],
        info.require,
        "analysis",
        error=UnsupportedModelError,
    )
    raises(["cannot be used for distillation"], info.require, "distillation", error=UnsupportedModelError)


def test_safetensors_without_tokenizer_is_not_analysable(tmp_path):
    folder = write_hf_llama(tmp_path / "hf", CONFIG)
    (folder / "tokenizer.json").unlink()
    info = inspect_model(folder)
    assert not info.capabilities.analysis and "no tokenizer" in info.capabilities.reasons["analysis"]


# ------------------------------------------------------------------------------------------
# House rules


def test_engine_imports_no_django_and_never_unpickles():
    sources = sorted(ENGINE.rglob("*.py"))
    assert len(sources) > 20  # formats/ and datasets/ too
    for source in sources:
        text = source.read_text()
        assert not re.search(r"^\s*(from|import)\s+django\b", text, re.MULTILINE), source
        for forbidden in ("import pickle", "torch.load", "pickle.load", "np.load", "numpy.load"):
            assert forbidden not in text, (source, forbidden)
