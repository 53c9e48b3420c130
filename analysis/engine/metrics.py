"""Honest metrics of sparse coders on held-out tokens.

* :func:`reconstruction_metrics`: FVU (fraction of the target's variance unexplained), L0 (latents active per
  token) and the fraction of dead latents (never active on the held-out tokens), streamed from shards;
* :func:`replacement_metrics`: how much the teacher's next-token distribution changes when coders replace
  MLPs (a forward hook swaps the MLP output for the coder's): KL(clean ‖ replaced) and the increase in
  next-token cross-entropy, per named set of replacements, all sharing one clean pass per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .capture import input_device
from .hookpoints import mlp_modules
from .shards import CaptureReader
from .transcoders import SparseCoder

Progress = Callable[..., None]
ShouldStop = Callable[[], bool]


class ReconstructionMetrics(NamedTuple):
    """Reconstruction quality of one coder on a token range."""

    fvu: float
    """Σ‖y − ŷ‖² / Σ‖y − ȳ‖² over the tokens (raw space)."""
    mse: float
    """Mean over tokens of ‖y − ŷ‖² / d."""
    l0: float
    """Mean number of active latents per token (≤ k)."""
    dead_fraction: float
    """Fraction of latents never active on these tokens."""
    n_tokens: int
    fired: torch.Tensor
    """(d_sae,) bool: which latents fired at least once."""


def reconstruction_metrics(
    coder: SparseCoder,
    capture: str | Path | CaptureReader,
    layer: int,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = 4096,
    should_stop: ShouldStop | None = None,
) -> ReconstructionMetrics:
    """FVU, MSE, L0 and dead fraction of ``coder`` on tokens ``[start, stop)`` of ``layer`` (float64 sums)."""
    reader = capture if isinstance(capture, CaptureReader) else CaptureReader(capture)
    err = 0.0
    sum_sq = 0.0
    sum_y = torch.zeros(coder.config.d_out, dtype=torch.float64)
    active = 0
    n = 0
    fired = torch.zeros(coder.d_sae, dtype=torch.bool)
    with torch.no_grad():
        for batch in reader.iter_batches(layer, batch_size, start=start, stop=stop):
            source, target = coder.source_target(batch.inputs, batch.outputs)
            pred = coder(source).cpu()
            top_acts, top_indices = coder.sparse_codes(source)
            err += float((target - pred).double().pow(2).sum())
            sum_sq += float(target.double().pow(2).sum())
            sum_y += target.double().sum(0)
            on = top_acts > 0
            active += int(on.sum())
            fired[top_indices[on]] = True
            n += target.shape[0]
            if should_stop is not None and should_stop():
                break
    if n == 0:
        raise ValueError(f"no tokens in [{start}, {stop}) to evaluate on")
    total_variance = sum_sq - float(sum_y.pow(2).sum()) / n
    return ReconstructionMetrics(
        fvu=err / total_variance if total_variance > 0 else float("nan"),
        mse=err / n / coder.config.d_out,
        l0=active / n,
        dead_fraction=1.0 - float(fired.float().mean()),
        n_tokens=n,
        fired=fired,
    )


class ReplacementMetrics(NamedTuple):
    """Effect on the teacher's next-token predictions of replacing MLPs by coders."""

    clean_ce: float
    """Mean next-token cross-entropy (nats) of the unmodified teacher."""
    replaced_ce: float
    """The same with the MLPs replaced."""
    ce_increase: float
    """``replaced_ce − clean_ce``."""
    kl: float
    """Mean KL(clean ‖ replaced) of the next-token distributions (nats)."""
    n_predictions: int
    """Positions averaged over (each sequence's tokens but its first)."""


class MLPReplacement:
    """Context manager: forward hooks making each listed layer's MLP output the coder's output."""

    def __init__(self, model: nn.Module, coders: Mapping[int, SparseCoder]) -> None:
        self.modules = mlp_modules(model, list(coders))
        self.coders = dict(coders)
        self._handles: list = []

    def __enter__(self) -> MLPReplacement:
        for layer, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(self.coders[layer]), with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _hook(coder: SparseCoder) -> Callable[..., torch.Tensor]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
            mlp_in = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            device = coder.W_dec.device
            replaced = coder.replace_mlp(mlp_in.to(device), output.to(device))
            return replaced.to(device=output.device, dtype=output.dtype)

        return hook


def _batches(sequences: Sequence[Sequence[int]], batch_size: int, pad_token_id: int):
    usable = [list(s) for s in sequences if len(s) >= 2]
    for a in range(0, len(usable), batch_size):
        group = usable[a : a + batch_size]
        width = max(len(s) for s in group)
        ids = torch.full((len(group), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, seq in enumerate(group):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        yield ids, mask


def replacement_metrics(
    model: nn.Module,
    sequences: Sequence[Sequence[int]],
    replacements: Mapping[str, Mapping[int, SparseCoder]],
    *,
    batch_size: int = 8,
    pad_token_id: int = 0,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> dict[str, ReplacementMetrics]:
    """KL and CE increase for each named set of ``{layer: coder}`` replacements (each set applied at once).

    ``sequences`` are token-id lists as the teacher sees them (e.g. ``CaptureReader.sequences`` of the held-out
    range); sequences shorter than 2 tokens predict nothing and are skipped. Example::

        replacement_metrics(model, seqs, {"L3 skip": {3: skip}, "L3 sae": {3: sae}, "all": all_layers})
    """
    device = input_device(model)
    was_training = model.training
    model.eval()
    totals = {name: [0.0, 0.0] for name in replacements}  # Σ CE replaced, Σ KL
    clean_total = 0.0
    count = 0
    n_batches = -(-sum(1 for s in sequences if len(s) >= 2) // batch_size)
    try:
        with torch.no_grad():
            for done, (ids, mask) in enumerate(_batches(sequences, batch_size, pad_token_id), start=1):
                ids, mask = ids.to(device), mask.to(device)
                targets = ids[:, 1:]
                valid = mask[:, 1:].bool()  # (B, T-1): positions that predict a real next token
                clean = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                clean_logp = F.log_softmax(clean, dim=-1)[valid]  # (n, V)
                tgt = targets[valid]
                clean_total += float(F.nll_loss(clean_logp, tgt, reduction="sum"))
                count += int(valid.sum())
                for name, coders in replacements.items():
                    with MLPReplacement(model, coders):
                        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                    logp = F.log_softmax(logits, dim=-1)[valid]
                    totals[name][0] += float(F.nll_loss(logp, tgt, reduction="sum"))
                    totals[name][1] += float((clean_logp.exp() * (clean_logp - logp)).sum())
                if progress is not None:
                    progress(done, n_batches, predictions=count)
                if should_stop is not None and should_stop():
                    break
    finally:
        if was_training:
            model.train()
    if count == 0:
        raise ValueError("no sequence of two or more tokens to evaluate the teacher on")
    clean_ce = clean_total / count
    return {
        name: ReplacementMetrics(clean_ce, ce / count, ce / count - clean_ce, kl / count, count)
        for name, (ce, kl) in totals.items()
    }
