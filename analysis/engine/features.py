"""What each feature of a coder does, in terms a person can read, computed streaming from a capture.

* :func:`feature_stats`: per feature, activation frequency, mean (when active), max, an activation histogram
  (fixed log-spaced bins), and the tokens of its top activations, kept in a bounded top-n per feature
  (a vectorised heap: memory ``d_sae × n_top`` whatever the number of tokens);
* :func:`top_contexts`: the token windows around those top activations, with the feature's activation on
  every token of the window (windows never cross a sequence);
* :func:`features_on_tokens`: the features firing on each token of a new text (the test box);
  :func:`explanation_score` scores a label by how well its predicted activations correlate with the real ones;
* :func:`feature_neuron_links`: which MLP neurons implement each feature: the correlation over captured tokens
  between the feature's activation and each neuron's activation (the input of ``down_proj``), top-n per
  feature, signed — the ``IMPLEMENTED_BY`` edges of the circuit graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .capture import MLPRecorder, input_device
from .hookpoints import mlp_modules
from .shards import ActivationBatch, CaptureReader
from .transcoders import SparseCoder

Progress = Callable[..., None]
ShouldStop = Callable[[], bool]

DEFAULT_HIST_EDGES = torch.logspace(-3, 3, 61)
"""Histogram bin edges of activation values: 10 per decade from 1e-3 to 1e3 (values outside go to the end bins)."""


class FeatureStats(NamedTuple):
    """Per-feature statistics over a token range (tensors indexed by feature)."""

    n_tokens: int
    count: torch.Tensor
    """(d_sae,) int64 tokens where the feature is active."""
    frequency: torch.Tensor
    """(d_sae,) fraction of tokens where it is active."""
    mean: torch.Tensor
    """(d_sae,) mean activation over the tokens where it is active (0 if never)."""
    max: torch.Tensor
    """(d_sae,) largest activation (0 if never)."""
    top_values: torch.Tensor
    """(d_sae, n_top) largest activations, descending (0 where it fired on fewer tokens)."""
    top_token_index: torch.Tensor
    """(d_sae, n_top) int64 global token index of each (−1 where none)."""
    hist_edges: torch.Tensor
    """(n_bins + 1,) bin edges of the histogram."""
    hist_counts: torch.Tensor
    """(d_sae, n_bins) int64 active tokens per bin."""


def _source(coder: SparseCoder, batch: ActivationBatch) -> torch.Tensor:
    return coder.source_target(batch.inputs, batch.outputs)[0]


def feature_stats(
    coder: SparseCoder,
    capture: str | Path | CaptureReader,
    layer: int,
    start: int = 0,
    stop: int | None = None,
    *,
    n_top: int = 20,
    hist_edges: torch.Tensor | None = None,
    batch_size: int = 2048,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> FeatureStats:
    """Frequency, mean, max, histogram and top activations of every feature of ``coder`` on ``layer``'s tokens."""
    reader = capture if isinstance(capture, CaptureReader) else CaptureReader(capture)
    edges = (DEFAULT_HIST_EDGES if hist_edges is None else hist_edges).to(torch.float32)
    d_sae = coder.d_sae
    count = torch.zeros(d_sae, dtype=torch.int64)
    total = torch.zeros(d_sae, dtype=torch.float64)
    maximum = torch.zeros(d_sae)
    hist = torch.zeros(d_sae, len(edges) - 1, dtype=torch.int64)
    top_values = torch.zeros(d_sae, n_top)
    top_index = torch.full((d_sae, n_top), -1, dtype=torch.int64)
    n = 0
    stop_at = reader.n_tokens if stop is None else min(stop, reader.n_tokens)
    with torch.no_grad():
        for batch in reader.iter_batches(layer, batch_size, start=start, stop=stop):
            top_acts, top_indices = coder.sparse_codes(_source(coder, batch))
            on = top_acts > 0
            feats = top_indices[on]  # (m,)
            vals = top_acts[on]
            count += torch.bincount(feats, minlength=d_sae)
            total.index_add_(0, feats, vals.double())
            maximum.scatter_reduce_(0, feats, vals, reduce="amax")
            bins = (torch.bucketize(vals, edges) - 1).clamp(0, len(edges) - 2)
            hist.view(-1).index_add_(0, feats * (len(edges) - 1) + bins, torch.ones_like(feats))
            # Bounded top-n per feature: this batch's best n per feature, merged with the running best n.
            dense = torch.zeros(top_acts.shape[0], d_sae).scatter_(1, top_indices, top_acts)
            m = min(n_top, dense.shape[0])
            b_vals, b_rows = dense.topk(m, dim=0)  # (m, d_sae)
            b_index = batch.token_index[b_rows].T  # (d_sae, m)
            b_vals = b_vals.T
            b_index = torch.where(b_vals > 0, b_index, torch.full_like(b_index, -1))
            merged_vals = torch.cat([top_values, b_vals], dim=1)
            merged_index = torch.cat([top_index, b_index], dim=1)
            top_values, order = merged_vals.topk(n_top, dim=1)
            top_index = merged_index.gather(1, order)
            n += int(batch.token_ids.shape[0])
            if progress is not None:
                progress(n, stop_at - start)
            if should_stop is not None and should_stop():
                break
    if n == 0:
        raise ValueError(f"no tokens in [{start}, {stop}) to compute feature statistics on")
    mean = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)).to(torch.float32)
    return FeatureStats(
        n_tokens=n,
        count=count,
        frequency=count.double() / n,
        mean=mean,
        max=maximum,
        top_values=top_values,
        top_token_index=top_index,
        hist_edges=edges,
        hist_counts=hist,
    )


class FeatureContext(NamedTuple):
    """A token window around one of a feature's top activations."""

    feature: int
    value: float
    """The activation at the centre token."""
    token_index: int
    """Global index (in the capture) of the centre token."""
    doc_id: int
    token_ids: list[int]
    """The window's tokens."""
    positions: list[int]
    activations: list[float]
    """The feature's activation on each token of the window."""
    center: int
    """Index of the activating token within the window."""


def top_contexts(
    coder: SparseCoder,
    capture: str | Path | CaptureReader,
    layer: int,
    stats: FeatureStats,
    features: Sequence[int] | None = None,
    *,
    before: int = 8,
    after: int = 4,
) -> dict[int, list[FeatureContext]]:
    """``{feature: contexts}`` around each feature's top activations in ``stats``, strongest first.

    Reads only the shards' rows the windows need; ask for a few hundred features at a time.
    """
    reader = capture if isinstance(capture, CaptureReader) else CaptureReader(capture)
    features = list(range(coder.d_sae)) if features is None else [int(f) for f in features]
    wanted: dict[int, list[tuple[int, float]]] = {}
    spans: list[tuple[int, int]] = []
    for f in features:
        pairs = [
            (int(i), float(v))
            for i, v in zip(stats.top_token_index[f].tolist(), stats.top_values[f].tolist(), strict=True)
            if i >= 0
        ]
        wanted[f] = pairs
        spans += [(max(0, i - before), min(reader.n_tokens, i + after + 1)) for i, _ in pairs]
    # Merge overlapping windows, then read each merged span once.
    spans.sort()
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    rows: dict[int, tuple[int, int, int, dict[int, float]]] = {}  # index -> (token, doc, pos, {feature: act})
    feature_set = set(features)
    with torch.no_grad():
        for a, b in merged:
            token_ids, doc_ids, positions = reader.read_tokens(a, b)
            x_in, x_out = reader.read_activations(layer, a, b)
            top_acts, top_indices = coder.sparse_codes(x_out if coder.reads_output else x_in)
            for r in range(b - a):
                acts = {
                    int(f): float(v)
                    for f, v in zip(top_indices[r].tolist(), top_acts[r].tolist(), strict=True)
                    if v > 0 and int(f) in feature_set
                }
                rows[a + r] = (int(token_ids[r]), int(doc_ids[r]), int(positions[r]), acts)
    contexts: dict[int, list[FeatureContext]] = {}
    for f, pairs in wanted.items():
        out = []
        for index, value in pairs:
            _, doc, pos, _ = rows[index]
            lo = index
            while lo - 1 >= max(0, index - before) and _same_sequence(rows[lo - 1], rows[lo]):
                lo -= 1
            hi = index
            while hi + 1 < min(reader.n_tokens, index + after + 1) and _same_sequence(rows[hi], rows[hi + 1]):
                hi += 1
            window = [rows[i] for i in range(lo, hi + 1)]
            out.append(
                FeatureContext(
                    feature=f,
                    value=value,
                    token_index=index,
                    doc_id=doc,
                    token_ids=[w[0] for w in window],
                    positions=[w[2] for w in window],
                    activations=[w[3].get(f, 0.0) for w in window],
                    center=index - lo,
                )
            )
        contexts[f] = out
    return contexts


def _same_sequence(prev: tuple, nxt: tuple) -> bool:
    return prev[1] == nxt[1] and nxt[2] == prev[2] + 1


class NeuronLinks(NamedTuple):
    """Per feature, the MLP neurons whose activation best tracks the feature's activation."""

    neurons: torch.Tensor
    """(d_sae, top_n) int64 neuron indices (inputs of ``down_proj``), strongest link first."""
    weights: torch.Tensor
    """(d_sae, top_n) signed Pearson correlation over the tokens (r² is the share of the feature's variance
    the neuron explains on its own)."""
    n_tokens: int


def _neuron_activations(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Inputs of the MLP's ``down_proj`` (the neuron activations) for MLP inputs ``x`` (N, d_model)."""
    seen: list[torch.Tensor] = []
    handle = mlp.down_proj.register_forward_hook(lambda module, args, output: seen.append(args[0].detach()))
    try:
        mlp(x)
    finally:
        handle.remove()
    return seen[0]


def feature_neuron_links(
    coder: SparseCoder,
    mlp: nn.Module,
    capture: str | Path | CaptureReader,
    layer: int,
    start: int = 0,
    stop: int | None = None,
    *,
    top_n: int = 10,
    batch_size: int = 2048,
    should_stop: ShouldStop | None = None,
) -> NeuronLinks:
    """Correlate every feature's activation with every neuron of ``mlp`` (the teacher's MLP at ``layer``).

    Streamed sums (float64) of a, a², h, h² and aᵀh, with the features' sparse top-k so the cross term costs
    ``N·k·d_ff`` per batch; memory ``d_sae × d_ff``.
    """
    reader = capture if isinstance(capture, CaptureReader) else CaptureReader(capture)
    d_sae = coder.d_sae
    sums_a = torch.zeros(d_sae, dtype=torch.float64)
    sums_a2 = torch.zeros(d_sae, dtype=torch.float64)
    cross = None
    sums_h = sums_h2 = None
    n = 0
    param = next(mlp.parameters())
    with torch.no_grad():
        for batch in reader.iter_batches(layer, batch_size, start=start, stop=stop):
            h = _neuron_activations(mlp, batch.inputs.to(device=param.device, dtype=param.dtype)).double().cpu()
            top_acts, top_indices = coder.sparse_codes(_source(coder, batch))
            rows = torch.arange(top_acts.shape[0]).repeat_interleave(coder.k)
            sparse = torch.sparse_coo_tensor(
                torch.stack([top_indices.flatten(), rows]),
                top_acts.flatten().double(),
                (d_sae, top_acts.shape[0]),
                check_invariants=True,
            )
            if cross is None:
                d_ff = h.shape[1]
                cross = torch.zeros(d_sae, d_ff, dtype=torch.float64)
                sums_h = torch.zeros(d_ff, dtype=torch.float64)
                sums_h2 = torch.zeros(d_ff, dtype=torch.float64)
            cross += torch.sparse.mm(sparse, h)
            sums_a.index_add_(0, top_indices.flatten(), top_acts.flatten().double())
            sums_a2.index_add_(0, top_indices.flatten(), top_acts.flatten().double().pow(2))
            sums_h += h.sum(0)
            sums_h2 += h.pow(2).sum(0)
            n += h.shape[0]
            if should_stop is not None and should_stop():
                break
    if n == 0 or cross is None:
        raise ValueError(f"no tokens in [{start}, {stop}) to link features to neurons on")
    cov = cross / n - torch.outer(sums_a / n, sums_h / n)
    var_a = (sums_a2 / n - (sums_a / n).pow(2)).clamp_min(0)
    var_h = (sums_h2 / n - (sums_h / n).pow(2)).clamp_min(0)
    denom = torch.outer(var_a.sqrt(), var_h.sqrt())
    corr = torch.where(denom > 0, cov / denom.clamp_min(1e-30), torch.zeros_like(cov)).to(torch.float32)
    top_n = min(top_n, corr.shape[1])
    _, neurons = corr.abs().topk(top_n, dim=1)
    return NeuronLinks(neurons=neurons, weights=corr.gather(1, neurons), n_tokens=n)


class TokenFeatures(NamedTuple):
    """The features active on each token of a text, for one layer."""

    top_acts: torch.Tensor
    """(T, k) activations (0 where fewer than k fired), per token."""
    top_indices: torch.Tensor
    """(T, k) feature indices."""


def features_on_tokens(
    model: nn.Module, coders: Mapping[int, SparseCoder], token_ids: Sequence[int]
) -> dict[int, TokenFeatures]:
    """Which features of ``{layer: coder}`` fire on each token of ``token_ids`` (the feature browser's test box).

    One forward pass of the teacher with its MLP inputs and outputs recorded; each coder then encodes its
    layer's source. Strongest feature first per token.
    """
    modules = mlp_modules(model, list(coders))
    device = input_device(model)
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=device)
    with MLPRecorder(modules) as recorder, torch.no_grad():
        records = recorder.run(lambda: model(input_ids=ids))
        result = {}
        for layer, coder in coders.items():
            mlp_in, mlp_out = records[layer]
            source = (mlp_out if coder.reads_output else mlp_in)[0]
            top_acts, top_indices = coder.sparse_codes(source)
            order = top_acts.argsort(dim=1, descending=True)
            result[layer] = TokenFeatures(top_acts.gather(1, order), top_indices.gather(1, order))
    return result


def explanation_score(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """How well a label's predicted activations match the real ones: Pearson correlation over tokens.

    The auto-interpretability score of a label (an agent reads the label, predicts each held-out token's
    activation; 1 is perfect, 0 no better than chance). 0 when either side is constant.
    """
    p = torch.as_tensor(list(predicted), dtype=torch.float64)
    a = torch.as_tensor(list(actual), dtype=torch.float64)
    if p.shape != a.shape:
        raise ValueError(f"{len(p)} predictions for {len(a)} activations")
    if len(p) < 2 or float(p.std()) == 0 or float(a.std()) == 0:
        return 0.0
    return float(torch.corrcoef(torch.stack([p, a]))[0, 1])
