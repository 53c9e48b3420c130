"""Feature statistics, top contexts, feature → neuron links and the logit lens, against direct computation."""

from __future__ import annotations

import copy

import pytest
import torch

from analysis.engine.capture import CaptureConfig, capture_mlp_activations
from analysis.engine.features import (
    explanation_score,
    feature_neuron_links,
    feature_stats,
    features_on_tokens,
    top_contexts,
)
from analysis.engine.logit_lens import logit_lens
from analysis.engine.shards import CaptureReader
from analysis.engine.training import train_on_tensors
from analysis.engine.transcoders import CoderConfig, SkipTranscoder
from tests.analysis.engine.support import documents

LAYER = 1


@pytest.fixture(scope="module")
def capture(model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cap")
    capture_mlp_activations(model, documents(40), directory, CaptureConfig(n_tokens=900, tokens_per_shard=200))
    return CaptureReader(directory)


@pytest.fixture(scope="module")
def coder(capture):
    x_in, x_out = capture.read_activations(LAYER, 0, capture.n_tokens)
    c = SkipTranscoder(CoderConfig(d_in=32, expansion=2, k=4, layer=LAYER), seed=0)
    return train_on_tensors(c, x_in, x_out, n_tokens=5000, batch_size=100, lr=3e-3)


def dense_acts(coder, capture, start=0, stop=None):
    x_in, _ = capture.read_activations(LAYER, start, stop or capture.n_tokens)
    with torch.no_grad():
        return coder.feature_activations(x_in)


def test_feature_stats_equal_direct_computation(coder, capture):
    stats = feature_stats(coder, capture, LAYER, start=50, n_top=5, batch_size=64)
    acts = dense_acts(coder, capture, 50)  # (N, d_sae)
    on = acts > 0
    assert stats.n_tokens == acts.shape[0]
    assert torch.equal(stats.count, on.sum(0))
    torch.testing.assert_close(stats.frequency, on.double().mean(0))
    mean = torch.where(on.any(0), acts.sum(0) / on.sum(0).clamp_min(1), torch.zeros(coder.d_sae))
    torch.testing.assert_close(stats.mean, mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stats.max, acts.max(0).values)
    top = acts.topk(5, dim=0)
    torch.testing.assert_close(stats.top_values, top.values.T)
    live = stats.top_values > 0
    assert torch.equal(stats.top_token_index[live], (top.indices.T + 50)[live])
    assert bool((stats.top_token_index[~live] == -1).all())
    edges = stats.hist_edges
    bins = (torch.bucketize(acts, edges) - 1).clamp(0, len(edges) - 2)
    for f in range(0, coder.d_sae, 7):
        expected = torch.bincount(bins[on[:, f], f], minlength=len(edges) - 1)
        assert torch.equal(stats.hist_counts[f], expected)
    assert int(stats.hist_counts.sum()) == int(on.sum())


def test_top_contexts_are_windows_of_one_sequence(coder, capture):
    stats = feature_stats(coder, capture, LAYER, n_top=3)
    features = [int(f) for f in stats.count.argsort(descending=True)[:6]]
    contexts = top_contexts(coder, capture, LAYER, stats, features, before=5, after=2)
    acts = dense_acts(coder, capture)
    token_ids, doc_ids, positions = capture.read_tokens()
    assert set(contexts) == set(features)
    for f, found in contexts.items():
        assert [c.value for c in found] == sorted((c.value for c in found), reverse=True)
        assert len(found) == 3
        for ctx in found:
            i = ctx.token_index
            assert ctx.value == pytest.approx(float(acts[i, f]))
            assert ctx.token_ids[ctx.center] == int(token_ids[i]) and ctx.doc_id == int(doc_ids[i])
            assert ctx.activations[ctx.center] == pytest.approx(ctx.value)
            lo = i - ctx.center
            assert ctx.token_ids == token_ids[lo : lo + len(ctx.token_ids)].tolist()
            assert ctx.activations == pytest.approx(acts[lo : lo + len(ctx.token_ids), f].tolist())
            assert ctx.positions == list(range(ctx.positions[0], ctx.positions[0] + len(ctx.positions)))
            assert len(ctx.token_ids) <= 8 and ctx.center <= 5
            assert set(doc_ids[lo : lo + len(ctx.token_ids)].tolist()) == {ctx.doc_id}
            if ctx.center < 5:  # cut short on the left: the window starts a sequence
                assert ctx.positions[0] == 0


def test_feature_neuron_links_equal_direct_correlation(model, coder, capture):
    mlp = model.model.layers[LAYER].mlp
    links = feature_neuron_links(coder, mlp, capture, LAYER, top_n=5, batch_size=128)
    x_in, _ = capture.read_activations(LAYER, 0, capture.n_tokens)
    with torch.no_grad():
        h = mlp.act_fn(mlp.gate_proj(x_in)) * mlp.up_proj(x_in)  # (N, d_ff): the neurons
        acts = coder.feature_activations(x_in)
    both = torch.cat([acts, h], dim=1).double().T
    corr = torch.corrcoef(both)[: coder.d_sae, coder.d_sae :]
    corr = torch.nan_to_num(corr).float()
    assert links.n_tokens == capture.n_tokens
    for f in range(coder.d_sae):
        if acts[:, f].std() == 0:
            continue
        torch.testing.assert_close(links.weights[f], corr[f, links.neurons[f]], atol=1e-4, rtol=1e-3)
        assert float(links.weights[f].abs().max()) == pytest.approx(float(corr[f].abs().max()), abs=1e-4)


def test_logit_lens_of_a_planted_direction_returns_the_planted_tokens(model):
    model = copy.deepcopy(model)
    coder = SkipTranscoder(CoderConfig(d_in=32, expansion=2, k=4), seed=0)
    coder.set_normalization(torch.zeros(32), 1.0, torch.zeros(32), 2.0)
    g = torch.Generator().manual_seed(5)
    u = torch.nn.functional.normalize(torch.randn(32, generator=g), dim=0)
    promoted, suppressed = [17, 99, 250], [42, 123]
    with torch.no_grad():
        norm = model.model.norm.weight
        coder.W_dec[7] = u / norm  # after the final norm's weight, the direction is u
        w_u = model.lm_head.weight
        w_u.normal_(0, 0.02, generator=g)
        for rank, t in enumerate(promoted):
            w_u[t] = (3.0 - rank * 0.5) * u
        for t in suppressed:
            w_u[t] = -2.0 * u
    lens = logit_lens(coder, model, features=[3, 7], top_n=3)
    assert lens.features.tolist() == [3, 7]
    assert lens.promoted_ids[1].tolist() == promoted
    assert set(lens.suppressed_ids[1, :2].tolist()) == set(suppressed)
    assert lens.promoted_logits[1, 0] == pytest.approx(3.0 * 2.0, rel=1e-4)  # |u|² · out_scale
    assert lens.suppressed_logits[1, 0] == pytest.approx(-4.0, rel=1e-4)
    every = logit_lens(coder, model, top_n=3, chunk=5)
    assert every.promoted_ids.shape == (coder.d_sae, 3)
    assert every.promoted_ids[7].tolist() == promoted


def test_features_on_tokens_match_the_captured_activations(model, coder, capture):
    seq = capture.sequences(0, 60)[0]
    found = features_on_tokens(model, {LAYER: coder}, seq)[LAYER]
    acts = dense_acts(coder, capture, 0, len(seq))  # the same sequence, captured in a batch (fp16)
    assert found.top_acts.shape == (len(seq), coder.k)
    assert bool((found.top_acts[:, :-1] >= found.top_acts[:, 1:]).all())  # strongest first
    for t in range(len(seq)):
        strongest = int(found.top_indices[t, 0])
        assert float(found.top_acts[t, 0]) == pytest.approx(float(acts[t, strongest]), rel=0.05, abs=1e-2)


def test_explanation_score():
    assert explanation_score([0, 1, 2, 0], [0, 2, 4, 0]) == pytest.approx(1.0)
    assert explanation_score([1, 1, 1], [0, 3, 1]) == 0.0
    assert explanation_score([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        explanation_score([1, 2], [1])
