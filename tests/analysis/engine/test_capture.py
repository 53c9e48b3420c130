"""Hook points, shards and capture on a tiny llama: equality with a forward pass, resume, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from analysis.engine.capture import CaptureConfig, EmptyDatasetError, capture_mlp_activations, plan_capture
from analysis.engine.hookpoints import (
    HookpointError,
    UnsupportedModelError,
    resolve_hookpoints,
    resolve_mlp_hookpoints,
)
from analysis.engine.shards import (
    MANIFEST_NAME,
    CaptureReader,
    InsufficientDiskError,
    ShardError,
    estimate_capture_bytes,
    require_free_disk,
)


def reference_activations(model, docs, seq_len):
    """Per layer, MLP input (post-attention norm output) and MLP output of each sequence run alone."""
    ins: dict[int, list[torch.Tensor]] = {i: [] for i in range(3)}
    outs: dict[int, list[torch.Tensor]] = {i: [] for i in range(3)}
    tokens = []
    with torch.no_grad():
        for doc in docs:
            for off in range(0, len(doc), seq_len):
                seq = torch.tensor([doc[off : off + seq_len]])
                hidden = model(seq, output_hidden_states=True).hidden_states
                for i, layer in enumerate(model.model.layers):
                    # Recompute the block by hand from its input: attention, residual, norm, MLP.
                    h = hidden[i]
                    pos = torch.arange(seq.shape[1])[None]
                    emb = model.model.rotary_emb(h, pos)
                    attn, _ = layer.self_attn(
                        layer.input_layernorm(h),
                        position_embeddings=emb,
                        attention_mask=torch.full((seq.shape[1], seq.shape[1]), float("-inf")).triu(1)[None, None],
                    )
                    mid = h + attn
                    x = layer.post_attention_layernorm(mid)
                    ins[i].append(x[0])
                    outs[i].append(layer.mlp(x)[0])
                tokens.extend(seq[0].tolist())
    return {i: torch.cat(v) for i, v in ins.items()}, {i: torch.cat(v) for i, v in outs.items()}, tokens


def test_hookpoints_resolve_in_module_order(model):
    assert resolve_hookpoints(model, "model.layers.*.mlp") == [f"model.layers.{i}.mlp" for i in range(3)]
    assert resolve_mlp_hookpoints(model, ["model.layers.2.mlp", "model.layers.0.mlp"]) == {
        0: "model.layers.0.mlp",
        2: "model.layers.2.mlp",
    }


def test_bad_hookpoint_patterns_are_refused(model):
    with pytest.raises(HookpointError, match="matches no module"):
        resolve_hookpoints(model, "model.blocks.*.mlp")
    with pytest.raises(HookpointError, match="no hook-point pattern"):
        resolve_hookpoints(model, [])
    with pytest.raises(HookpointError, match="not a decoder block's MLP"):
        resolve_mlp_hookpoints(model, "model.layers.*")


def test_non_llama_model_is_refused(tmp_path):
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedModelError, match="not supported yet; supported: llama"):
        resolve_mlp_hookpoints(gpt2, "transformer.h.*.mlp")
    with pytest.raises(UnsupportedModelError, match="'gpt2'"):
        capture_mlp_activations(gpt2, [[1, 2, 3]], tmp_path / "c", CaptureConfig(n_tokens=10))


def test_shards_equal_an_in_memory_forward_pass(model, docs, tmp_path):
    config = CaptureConfig(n_tokens=10_000, seq_len=16, batch_size=3, tokens_per_shard=50, dtype="float16")
    seen = []
    result = capture_mlp_activations(model, docs, tmp_path / "cap", config, progress=lambda d, t, **m: seen.append(m))
    ref_in, ref_out, ref_tokens = reference_activations(model, docs, 16)
    assert result.complete and result.n_tokens == len(ref_tokens) == sum(len(d) for d in docs)
    assert result.n_shards == -(-len(ref_tokens) // 50)
    assert seen and seen[-1]["tokens_per_second"] > 0
    reader = CaptureReader(tmp_path / "cap")
    assert reader.layers == [0, 1, 2]
    token_ids, doc_ids, positions = reader.read_tokens()
    assert token_ids.tolist() == ref_tokens
    assert doc_ids.tolist() == [i for i, d in enumerate(docs) for _ in d]
    assert positions.tolist() == [p % 16 for d in docs for p in range(len(d))]
    for layer in range(3):
        got_in = torch.cat([b.inputs for b in reader.iter_batches(layer, 37)])
        got_out = torch.cat([b.outputs for b in reader.iter_batches(layer, 37)])
        assert got_in.shape == ref_in[layer].shape
        # fp16 storage: equal to float32 activations within fp16 rounding.
        torch.testing.assert_close(got_in, ref_in[layer].half().float(), atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(got_out, ref_out[layer].half().float(), atol=2e-3, rtol=2e-3)
        # The MLP input is after the norm: feeding it to the MLP gives the recorded output.
        with torch.no_grad():
            torch.testing.assert_close(model.model.layers[layer].mlp(got_in), got_out, atol=5e-3, rtol=5e-3)
    manifest = json.loads((tmp_path / "cap" / MANIFEST_NAME).read_text())
    assert manifest["complete"] and manifest["n_tokens"] == len(ref_tokens)
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])


def test_reader_streams_shuffled_batches_and_ranges(model, docs, tmp_path):
    config = CaptureConfig(n_tokens=260, hookpoints=["model.layers.1.mlp"], seq_len=32, batch_size=4,
                           tokens_per_shard=64, dtype="bfloat16")  # fmt: skip
    capture_mlp_activations(model, docs, tmp_path / "cap", config)
    reader = CaptureReader(tmp_path / "cap")
    assert reader.n_tokens == 260 and reader.layers == [1]
    plain = torch.cat([b.token_index for b in reader.iter_batches(1, 50, start=10, stop=250)])
    assert plain.tolist() == list(range(10, 250))
    shuffled = [b.token_index for b in reader.iter_batches(1, 50, start=10, stop=250, shuffle=True, seed=3)]
    again = [b.token_index for b in reader.iter_batches(1, 50, start=10, stop=250, shuffle=True, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again, strict=True))
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10, 250)) != torch.cat(shuffled).tolist()
    assert all(len(b) == 50 for b in shuffled[:-1])
    with pytest.raises(ShardError, match="layer 0 was not captured"):
        next(reader.iter_batches(0, 8))
    # Only layer 1 hooked: the forward pass stops after it, and what it recorded is still the layer's activations.
    ref_in, ref_out, _ = reference_activations(model, docs, 32)
    got = torch.cat([b.inputs for b in reader.iter_batches(1, 64)])
    torch.testing.assert_close(got, ref_in[1][:260].bfloat16().float(), atol=2e-2, rtol=2e-2)


def test_a_stopped_capture_leaves_no_hook_behind(model, docs, tmp_path):
    config = CaptureConfig(n_tokens=200, hookpoints=["model.layers.0.mlp"], tokens_per_shard=40)
    capture_mlp_activations(model, docs, tmp_path / "c", config, should_stop=lambda: True)
    ids = torch.tensor([docs[0]])
    with torch.no_grad():
        logits = model(ids).logits  # a leftover hook would cut this forward pass short after layer 0
    assert logits.shape == (1, len(docs[0]), 300)


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("shard-*.safetensors"))}


def test_killed_capture_resumes_to_byte_identical_shards(model, docs, tmp_path):
    config = CaptureConfig(n_tokens=200, seq_len=16, batch_size=3, tokens_per_shard=40)
    whole = capture_mlp_activations(model, docs, tmp_path / "whole", config)
    assert whole.complete

    part = tmp_path / "part"
    first = capture_mlp_activations(
        model, docs, part, config, should_stop=lambda: len(list(part.glob("shard-*.safetensors"))) >= 2
    )
    assert first.stopped and not first.complete and first.n_shards == 2
    assert not (part / MANIFEST_NAME).exists()
    with pytest.raises(ShardError, match="not a complete capture"):
        CaptureReader(part)
    assert CaptureReader(part, require_complete=False).n_tokens == 80
    # A kill in the middle of writing the third shard leaves its temporary file behind.
    (part / "shard-00002.safetensors.partial").write_bytes(b"half a shard")
    resumed = capture_mlp_activations(model, docs, part, config)
    assert resumed.complete and resumed.resumed_from_tokens == 80
    assert not list(part.glob("*.partial"))
    assert shard_bytes(part) == shard_bytes(tmp_path / "whole")
    assert resumed.manifest["shards"] == whole.manifest["shards"]
    # Resuming a finished capture does nothing; resuming with other settings is refused.
    again = capture_mlp_activations(model, docs, part, config)
    assert again.complete and again.n_tokens == 200
    other = CaptureConfig(n_tokens=200, seq_len=8, batch_size=3, tokens_per_shard=40)
    with pytest.raises(ShardError, match="different settings"):
        capture_mlp_activations(model, docs, part, other)


def test_empty_dataset_is_refused(model, tmp_path):
    with pytest.raises(EmptyDatasetError, match="no tokens"):
        capture_mlp_activations(model, [[], []], tmp_path / "c", CaptureConfig(n_tokens=100))
    with pytest.raises(EmptyDatasetError):
        capture_mlp_activations(model, [], tmp_path / "d", CaptureConfig(n_tokens=100))


def test_capture_bigger_than_free_disk_is_refused(model, docs, tmp_path):
    per_token = 3 * 2 * 32 * 2 + 16
    assert estimate_capture_bytes(1000, 3, 32, "float16") >= 1000 * per_token
    assert estimate_capture_bytes(1000, 3, 32, "float16") < 1000 * per_token + 10_000
    huge = CaptureConfig(n_tokens=10**15)
    assert plan_capture(model, huge).estimated_bytes > 10**15 * per_token
    with pytest.raises(InsufficientDiskError, match="only .* is free"):
        capture_mlp_activations(model, docs, tmp_path / "c", huge)
    assert not list((tmp_path / "c").glob("*"))  # nothing left: the same directory takes another capture
    assert capture_mlp_activations(model, docs, tmp_path / "c", CaptureConfig(n_tokens=50)).complete
    with pytest.raises(InsufficientDiskError, match="fewer tokens or fewer layers"):
        require_free_disk(tmp_path / "not" / "yet", 10**18)
