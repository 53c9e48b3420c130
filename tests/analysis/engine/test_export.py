"""Exports to circuit-tracer and SAELens load back with safetensors and give the coders' outputs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from analysis.engine.export import ExportError, export_circuit_tracer, export_saelens
from analysis.engine.transcoders import CoderConfig, SparseCoder


def coder(kind: str, layer: int, seed: int = 0) -> SparseCoder:
    c = SparseCoder.create(CoderConfig(d_in=32, kind=kind, expansion=4, k=5, layer=layer), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        c.b_enc.normal_(0.2, 0.5, generator=g)
        c.b_dec.normal_(generator=g)
        if c.W_skip is not None:
            c.W_skip.normal_(0, 0.2, generator=g)
    c.set_normalization(torch.randn(32, generator=g), 1.7, torch.randn(32, generator=g), 0.4)
    return c.eval()


def circuit_tracer_forward(weights: dict[str, torch.Tensor], k: int, x: torch.Tensor) -> torch.Tensor:
    """circuit-tracer's SingleLayerTranscoder math: F.linear encode, TopK (k largest kept), acts @ W_dec + b_dec."""
    pre = torch.nn.functional.linear(x, weights["W_enc"], weights["b_enc"])
    gate = torch.zeros_like(pre).scatter_(-1, pre.topk(k, dim=-1).indices, 1.0)
    out = (pre * gate) @ weights["W_dec"] + weights["b_dec"]
    if "W_skip" in weights:
        out = out + x @ weights["W_skip"].T
    return out


@pytest.mark.parametrize("kind", ["skip_transcoder", "transcoder"])
def test_circuit_tracer_export_loads_back_with_the_same_outputs(tmp_path, kind):
    coders = {layer: coder(kind, layer, seed=layer) for layer in range(3)}
    folder = export_circuit_tracer(coders, tmp_path / "ct", n_layers=3, model_name="tiny-llama")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["model_kind"] == "transcoder_set"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == ("mlp.hook_in", "mlp.hook_out")
    assert config["activation"] == "topk" and config["k"] == 5
    x = torch.randn(200, 32) * 2
    for layer, c in coders.items():
        weights = load_file(str(folder / f"layer_{layer}.safetensors"))
        assert weights["W_enc"].shape == weights["W_dec"].shape == (128, 32)
        assert ("W_skip" in weights) == (kind == "skip_transcoder")
        if "W_skip" in weights:
            assert weights["W_skip"].shape == (32, 32)
        with torch.no_grad():
            ours = c(x)
            pre = torch.nn.functional.linear(x, weights["W_enc"], weights["b_enc"])
        enough = (pre > 0).sum(1) >= c.k  # circuit-tracer's TopK has no ReLU: equal when k pre-acts are positive
        assert enough.float().mean() > 0.9
        torch.testing.assert_close(circuit_tracer_forward(weights, c.k, x)[enough], ours[enough], atol=1e-4, rtol=1e-4)


def test_circuit_tracer_export_refuses_partial_sets_and_saes(tmp_path):
    with pytest.raises(ExportError, match=r"every layer 0\.\.2 .*missing layers \[1\]"):
        export_circuit_tracer({0: coder("skip_transcoder", 0), 2: coder("skip_transcoder", 2)}, tmp_path, n_layers=3)
    with pytest.raises(ExportError, match="an SAE reconstructs"):
        export_circuit_tracer({0: coder("sae", 0)}, tmp_path, n_layers=1)
    with pytest.raises(ExportError, match="one kind"):
        export_circuit_tracer({0: coder("skip_transcoder", 0), 1: coder("transcoder", 1)}, tmp_path, n_layers=2)
    assert not list(tmp_path.glob("layer_*"))


@pytest.mark.parametrize("kind", ["skip_transcoder", "transcoder", "sae"])
def test_saelens_export_loads_back_with_the_same_outputs(tmp_path, kind):
    c = coder(kind, layer=2)
    c.config.hookpoint = "model.layers.2.mlp"
    folder = export_saelens(c, tmp_path / "sl", model_name="tiny-llama")
    cfg = json.loads((folder / "cfg.json").read_text())
    weights = load_file(str(folder / "sae_weights.safetensors"))
    assert (
        cfg["architecture"] == {"skip_transcoder": "skip_transcoder", "transcoder": "transcoder", "sae": "topk"}[kind]
    )
    assert cfg["d_in"] == 32 and cfg["d_sae"] == 128 and cfg["apply_b_dec_to_input"] is False
    assert cfg["metadata"]["k"] == 5 and cfg["metadata"]["hf_hook_name"] == "model.layers.2.mlp"
    assert weights["W_enc"].shape == (32, 128) and weights["W_dec"].shape == (128, 32)
    x = torch.randn(100, 32)
    # SAELens' math: x @ W_enc + b_enc, top-k then ReLU, @ W_dec + b_dec (+ x @ W_skip.T).
    pre = x @ weights["W_enc"] + weights["b_enc"]
    top = pre.topk(5, dim=-1)
    acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
    out = acts @ weights["W_dec"] + weights["b_dec"]
    if kind == "skip_transcoder":
        assert weights["W_skip"].shape == (32, 32) and cfg["d_out"] == 32
        out = out + x @ weights["W_skip"].T
    else:
        assert "W_skip" not in weights
    if kind == "sae":
        assert cfg["k"] == 5 and cfg["metadata"]["hook_name"] == "blocks.2.hook_mlp_out"
    else:
        assert cfg["metadata"]["hook_name"] == "blocks.2.ln2.hook_normalized"
        assert cfg["metadata"]["hook_name_out"] == "blocks.2.hook_mlp_out"
    with torch.no_grad():
        torch.testing.assert_close(out, c(x), atol=1e-4, rtol=1e-4)
