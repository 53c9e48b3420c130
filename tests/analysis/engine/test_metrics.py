"""FVU, L0, dead fraction, KL and CE increase, each checked against a direct computation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.engine.capture import CaptureConfig, capture_mlp_activations
from analysis.engine.metrics import reconstruction_metrics, replacement_metrics
from analysis.engine.shards import CaptureReader
from analysis.engine.training import train_on_tensors
from analysis.engine.transcoders import CoderConfig, SparseCoder

HELD_OUT = 1100
"""Tokens before this are trained on, the rest held out."""


@pytest.fixture(scope="module")
def capture(model, tmp_path_factory):
    from tests.analysis.engine.support import documents

    directory = tmp_path_factory.mktemp("cap")
    capture_mlp_activations(model, documents(60), directory, CaptureConfig(n_tokens=1400, tokens_per_shard=256))
    return CaptureReader(directory)


def trained(capture: CaptureReader, layer: int, kind: str) -> SparseCoder:
    x_in, x_out = capture.read_activations(layer, 0, HELD_OUT)
    coder = SparseCoder.create(CoderConfig(d_in=32, kind=kind, expansion=2, k=4, layer=layer), seed=1)
    source, target = coder.source_target(x_in, x_out)
    return train_on_tensors(coder, source, target, n_tokens=20_000, batch_size=100, lr=3e-3)


@pytest.mark.parametrize("kind", ["skip_transcoder", "sae"])
def test_reconstruction_metrics_equal_direct_computation(capture, kind):
    coder = trained(capture, 1, kind)
    metrics = reconstruction_metrics(coder, capture, layer=1, start=HELD_OUT, batch_size=37)
    x_in, x_out = capture.read_activations(1, HELD_OUT, capture.n_tokens)
    source = x_out if kind == "sae" else x_in
    with torch.no_grad():
        pred = coder(source)
        acts = coder.feature_activations(source)
    fvu = float((x_out - pred).pow(2).sum() / (x_out - x_out.mean(0)).pow(2).sum())
    assert metrics.n_tokens == capture.n_tokens - HELD_OUT
    assert metrics.fvu == pytest.approx(fvu, rel=1e-4)
    assert metrics.mse == pytest.approx(float((x_out - pred).pow(2).mean()), rel=1e-4)
    assert metrics.l0 == pytest.approx(float((acts > 0).sum(1).float().mean()), rel=1e-6)
    assert metrics.dead_fraction == pytest.approx(float(((acts > 0).sum(0) == 0).float().mean()))
    assert 0 < metrics.fvu < 1 and 0 < metrics.l0 <= 4


class Replaced(nn.Module):
    """The MLP swapped for a coder by hand (the direct computation the hooks must agree with)."""

    def __init__(self, mlp: nn.Module, coder: SparseCoder) -> None:
        super().__init__()
        self.mlp, self.coder = mlp, coder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coder.replace_mlp(x, self.mlp(x))


def direct_kl_ce(model, sequences, coders):
    swapped = copy.deepcopy(model)
    for layer, coder in coders.items():
        swapped.model.layers[layer].mlp = Replaced(swapped.model.layers[layer].mlp, coder)
    clean_ce = ce = kl = 0.0
    n = 0
    with torch.no_grad():
        for seq in sequences:
            ids = torch.tensor([seq])
            p = F.log_softmax(model(ids).logits[0, :-1], -1)
            q = F.log_softmax(swapped(ids).logits[0, :-1], -1)
            target = ids[0, 1:]
            clean_ce += float(F.cross_entropy(p, target, reduction="sum"))
            ce += float(F.cross_entropy(q, target, reduction="sum"))
            kl += float(F.kl_div(q, p, log_target=True, reduction="sum"))
            n += len(seq) - 1
    return clean_ce / n, ce / n, kl / n


def test_kl_and_ce_increase_equal_direct_computation(model, capture):
    sequences = capture.sequences(HELD_OUT)
    assert sequences and all(len(s) >= 1 for s in sequences)
    skip = trained(capture, 1, "skip_transcoder")
    sae = trained(capture, 1, "sae")
    every = {layer: trained(capture, layer, "transcoder") for layer in range(3)}
    results = replacement_metrics(model, sequences, {"skip": {1: skip}, "sae": {1: sae}, "all": every}, batch_size=3)
    usable = [s for s in sequences if len(s) >= 2]
    for name, coders in (("skip", {1: skip}), ("sae", {1: sae}), ("all", every)):
        clean_ce, ce, kl = direct_kl_ce(model, usable, coders)
        got = results[name]
        assert got.n_predictions == sum(len(s) - 1 for s in usable)
        assert got.clean_ce == pytest.approx(clean_ce, rel=1e-4)
        assert got.replaced_ce == pytest.approx(ce, rel=1e-4)
        assert got.ce_increase == pytest.approx(ce - clean_ce, rel=1e-3, abs=1e-5)
        assert got.kl == pytest.approx(kl, rel=1e-3, abs=1e-6)
        assert got.kl > 0
    # Hooks are removed afterwards: the model is the teacher again.
    assert results["all"].kl > results["skip"].kl
    again = replacement_metrics(model, sequences, {"none": {}})
    assert again["none"].kl == pytest.approx(0.0, abs=1e-7) and again["none"].ce_increase == pytest.approx(0, abs=1e-7)


def test_metrics_refuse_empty_inputs(model, capture):
    coder = trained(capture, 0, "transcoder")
    with pytest.raises(ValueError, match="no tokens"):
        reconstruction_metrics(coder, capture, 0, start=capture.n_tokens)
    with pytest.raises(ValueError, match="two or more tokens"):
        replacement_metrics(model, [[5]], {"x": {0: coder}})
