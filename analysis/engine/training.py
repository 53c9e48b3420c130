"""Training sparse coders on captured activations, streamed from the shards (never all in RAM).

One pass over the shards trains every requested ``(layer, kind)`` pair side by side: each batch of
tokens is read once for all layers and fed to every coder, so a skip transcoder and its baselines see
exactly the same tokens (the same budget). The last ``held_out_tokens`` tokens of the capture are never
trained on; :mod:`analysis.engine.metrics` evaluates on them.

Per step: loss = FVU (normalised space) + ``auxk_alpha`` · auxiliary-k loss of the dead latents; the part
of the decoder gradient parallel to its rows is removed, the optimiser steps, and decoder rows are
renormalised.

Optimisers (``OPTIMIZERS``): ``signum`` (the default) is sign descent under the ``schedulefree`` library's
``ScheduleFreeWrapper`` with momentum 0.95, the default of EleutherAI's sparsify; its weights at the end
are the schedule-free average, whose decoder rows :meth:`CoderTrainer.finish` brings back to unit norm
(each row's norm folded into its latent's encoder row and bias: a latent's contribution is unchanged, the
top-k choice between near-equal latents can change). ``adam`` is Adam with a
constant learning rate. Both scale the learning rate with ``1 / sqrt(d_sae / 2**14)`` (Gao et al. 2024), and
the weights that read the input (``W_enc``, ``W_skip``) step at ``input_lr_scale`` times it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch
from schedulefree import ScheduleFreeWrapper
from torch import nn

from .capture import CaptureConfig, plan_capture, stream_mlp_activations
from .shards import CaptureReader
from .transcoders import KINDS, CoderConfig, RunningStats, SparseCoder

Progress = Callable[..., None]
"""``progress(done, total, **metrics)``: tokens trained on (per coder) out of the token budget."""
ShouldStop = Callable[[], bool]
"""Checked after each step; True ends training early, returning the coders as they are."""
StepCallback = Callable[..., None]
"""``on_step(layer=, kind=, step=, tokens=, fvu=, auxk=, dead_fraction=)`` every ``log_every`` steps."""

OPTIMIZERS = ("signum", "adam")
"""Optimisers a run can use; the first is the default."""
BASE_LR = {"signum": 5e-3, "adam": 2e-4}
"""Learning rate at 2**14 latents per optimiser; :func:`default_lr` scales it to the width."""


@dataclass
class TrainingConfig:
    """How to train; one config serves every layer and kind of a run."""

    layers: list[int] | None = None
    """Captured layers to train (None: every captured layer)."""
    kinds: list[str] = field(default_factory=lambda: ["skip_transcoder"])
    """Coder kinds trained side by side per layer (``KINDS``); the baselines share the same tokens."""
    expansion: int = 8
    """Latents per input dimension."""
    k: int = 32
    """Latents kept per token."""
    lr: float | None = None
    """Learning rate; None: :func:`default_lr` of the optimiser and width."""
    optimizer: str = "signum"
    """Optimiser (``OPTIMIZERS``)."""
    input_lr_scale: float = 0.25
    """Learning-rate factor of the weights that read the coder's input (``W_enc``, ``W_skip``); the decoder and
    the biases step at ``lr``. Sign-based steps are not invariant to the input's scale: in the normalised
    space every input dimension has unit scale, so these weights get a smaller step (chosen on SmolLM2,
    ``bench/README.md``)."""
    batch_size: int = 1024
    """Tokens per step."""
    n_tokens: int | None = None
    """Training-token budget per coder; None: one pass over the training tokens. More than there are
    training tokens repeats them (another shuffle per pass)."""
    held_out_tokens: int = 0
    """Tokens kept out of training (for metrics): the last ones of a capture; in online training, the first
    ones of the document stream."""
    auxk_alpha: float = 1 / 32
    """Weight of the auxiliary-k loss."""
    k_aux: int | None = None
    """Dead latents the auxiliary loss uses per token; None: ``d_out // 2``."""
    dead_after_tokens: int | None = None
    """A latent that has not fired for this many tokens is dead; None: a tenth of the budget (≥ 10 batches,
    at most 10M)."""
    norm_tokens: int = 65_536
    """Training tokens the normalisation statistics are computed on."""
    seed: int = 0
    """Seed of initialisation and shuffling."""
    shuffle: bool = True
    """Shuffle shards and tokens within a shard."""
    device: str = "cpu"
    """Where the coders train."""
    log_every: int = 1
    """Call ``on_step`` every this many steps."""

    def __post_init__(self) -> None:
        self.kinds = list(self.kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds {bad or self.kinds} are not coder kinds; use some of {KINDS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not supported; use one of {OPTIMIZERS}")
        if self.batch_size < 1 or self.expansion < 1 or self.k < 1:
            raise ValueError("batch_size, expansion and k must each be at least 1")
        if self.held_out_tokens < 0 or (self.n_tokens is not None and self.n_tokens < 1):
            raise ValueError("held_out_tokens must be ≥ 0 and n_tokens ≥ 1")
        if self.lr is not None and not self.lr > 0:
            raise ValueError("lr must be positive")
        if not self.input_lr_scale > 0:
            raise ValueError("input_lr_scale must be positive")


class TrainingResult(NamedTuple):
    """Outcome of :func:`train_sparse_coders`."""

    coders: dict[tuple[int, str], SparseCoder]
    """``{(layer, kind): coder}`` (on CPU, eval mode)."""
    tokens: int
    """Tokens each coder trained on."""
    steps: int
    stopped: bool
    """True when ``should_stop`` ended training early."""
    train_range: tuple[int, int]
    """Token range of the capture trained on."""
    held_out_range: tuple[int, int]
    """Token range kept out (evaluate there)."""
    final: dict[tuple[int, str], dict[str, float]]
    """Last step's ``fvu``, ``auxk``, ``dead_fraction`` per coder."""
    tokens_per_second: float


def default_lr(d_sae: int, optimizer: str = "signum") -> float:
    """``BASE_LR[optimizer] / sqrt(d_sae / 2**14)``: 5e-3 for signum, 2e-4 for Adam at 16,384 latents."""
    if optimizer not in BASE_LR:
        raise ValueError(f"optimizer {optimizer!r} is not supported; use one of {OPTIMIZERS}")
    return BASE_LR[optimizer] / math.sqrt(d_sae / 2**14)


class SignSGD(torch.optim.Optimizer):
    """Steepest descent in the max norm: every parameter moves by ``lr`` against the sign of its gradient.

    Under :class:`schedulefree.ScheduleFreeWrapper` (momentum, iterate averaging) this is sparsify's signum.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive (got {lr})")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("SignSGD takes no closure")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


def make_optimizer(params: Iterable[torch.Tensor] | Iterable[dict], optimizer: str, lr: float) -> torch.optim.Optimizer:
    """The optimiser of ``OPTIMIZERS`` named ``optimizer``, ready to step (a schedule-free one in train mode).

    ``params``: tensors, or parameter groups (dicts with their own ``lr``).
    """
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, eps=6.25e-10)
    if optimizer == "signum":
        wrapped = ScheduleFreeWrapper(SignSGD(params, lr=lr), momentum=0.95)
        wrapped.train()
        return wrapped
    raise ValueError(f"optimizer {optimizer!r} is not supported; use one of {OPTIMIZERS}")


class CoderTrainer:
    """One coder's optimiser and dead-latent bookkeeping; :meth:`step` is the training step every path uses."""

    def __init__(
        self,
        coder: SparseCoder,
        lr: float | None = None,
        auxk_alpha: float = 1 / 32,
        k_aux: int | None = None,
        dead_after_tokens: int = 10_000_000,
        optimizer: str = OPTIMIZERS[0],
        input_lr_scale: float = 0.25,
    ) -> None:
        self.coder = coder
        self.lr = lr or default_lr(coder.d_sae, optimizer)
        reading = [coder.W_enc] + ([coder.W_skip] if coder.W_skip is not None else [])
        rest = [p for p in coder.parameters() if all(p is not r for r in reading)]
        groups = [{"params": reading, "lr": self.lr * input_lr_scale}, {"params": rest, "lr": self.lr}]
        self.optimizer = make_optimizer(groups, optimizer, self.lr)
        self.auxk_alpha = auxk_alpha
        self.k_aux = k_aux
        self.dead_after_tokens = dead_after_tokens
        self.since_fired = torch.zeros(coder.d_sae, dtype=torch.long, device=coder.W_dec.device)

    def step(self, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One optimiser step on raw ``(N, d)`` source and target; returns ``fvu``, ``auxk``, ``dead_fraction``."""
        coder = self.coder
        device = coder.W_dec.device
        xn = coder.normalize_input(source.to(device))
        yn = coder.normalize_output(target.to(device))
        dead = self.since_fired >= self.dead_after_tokens
        out = coder.forward_train(xn, yn, dead_mask=dead, k_aux=self.k_aux)
        self.optimizer.zero_grad(set_to_none=True)
        (out.fvu + self.auxk_alpha * out.auxk_loss).backward()
        coder.remove_parallel_gradient_()
        self.optimizer.step()
        coder.normalize_decoder_()
        fired = torch.zeros_like(self.since_fired, dtype=torch.bool)
        fired[out.top_indices[out.top_acts > 0]] = True
        self.since_fired += source.shape[0]
        self.since_fired[fired] = 0
        return {
            "fvu": float(out.fvu.detach()),
            "auxk": float(out.auxk_loss.detach()),
            "dead_fraction": float(dead.float().mean()),
        }

    @torch.no_grad()
    def finish(self) -> SparseCoder:
        """The trained coder in eval mode: a schedule-free optimiser's averaged weights, unit-norm decoder rows."""
        if hasattr(self.optimizer, "eval"):
            self.optimizer.eval()  # schedule-free: the parameters become the averaged iterate
        self.coder.fold_decoder_norms_()
        return self.coder.eval()


def normalization_stats(
    reader: CaptureReader, layers: Sequence[int], stop: int, n_tokens: int, batch_size: int = 4096
) -> dict[int, tuple[RunningStats, RunningStats]]:
    """Streaming ``(input stats, output stats)`` per layer over the first ``n_tokens`` of ``[0, stop)``."""
    stats = {layer: (RunningStats(reader.d_model), RunningStats(reader.d_model)) for layer in layers}
    for batches in reader.iter_multi_batches(layers, batch_size, stop=min(stop, max(1, n_tokens))):
        for layer, batch in batches.items():
            stats[layer][0].update(batch.inputs)
            stats[layer][1].update(batch.outputs)
    return stats


class _SideBySide:
    """The coders of one run: every (layer, kind) trained on the same batches, with shared bookkeeping."""

    def __init__(
        self,
        layers: Sequence[int],
        d_model: int,
        hookpoints: Mapping[str, str],
        stats: Mapping[int, tuple[RunningStats, RunningStats]],
        config: TrainingConfig,
        budget: int,
        on_step: StepCallback | None,
        progress: Progress | None,
    ) -> None:
        device = torch.device(config.device)
        dead_after = config.dead_after_tokens or min(10_000_000, max(10 * config.batch_size, budget // 10))
        self.trainers: dict[tuple[int, str], CoderTrainer] = {}
        for layer in layers:
            for kind in config.kinds:
                coder_config = CoderConfig(
                    d_in=d_model,
                    kind=kind,
                    expansion=config.expansion,
                    k=config.k,
                    layer=layer,
                    hookpoint=hookpoints.get(str(layer)),
                )
                coder = SparseCoder.create(coder_config, seed=config.seed + layer)
                in_stats, out_stats = (stats[layer][1], stats[layer][1]) if coder.reads_output else stats[layer]
                i, o = in_stats.result(), out_stats.result()
                coder.set_normalization(i.mean, i.scale, o.mean, o.scale)
                coder.to(device).train()
                self.trainers[layer, kind] = CoderTrainer(
                    coder,
                    config.lr,
                    config.auxk_alpha,
                    config.k_aux,
                    dead_after,
                    optimizer=config.optimizer,
                    input_lr_scale=config.input_lr_scale,
                )
        self.config = config
        self.budget = budget
        self.on_step = on_step
        self.progress = progress
        self.tokens = 0
        self.steps = 0
        self.final: dict[tuple[int, str], dict[str, float]] = {}
        self.started = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.tokens >= self.budget

    def step(self, batch: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """One step of every coder on ``{layer: (mlp_in, mlp_out)}`` (cut to what is left of the budget)."""
        n = next(iter(batch.values()))[0].shape[0]
        take = min(n, self.budget - self.tokens)
        for (layer, kind), trainer in self.trainers.items():
            mlp_in, mlp_out = batch[layer]
            source, target = trainer.coder.source_target(mlp_in[:take], mlp_out[:take])
            self.final[layer, kind] = trainer.step(source, target)
            if self.on_step is not None and self.steps % self.config.log_every == 0:
                self.on_step(
                    layer=layer, kind=kind, step=self.steps, tokens=self.tokens + take, **self.final[layer, kind]
                )
        self.tokens += take
        self.steps += 1
        if self.progress is not None:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            self.progress(self.tokens, self.budget, tokens_per_second=self.tokens / elapsed, steps=self.steps)

    def result(self, stopped: bool, train_range: tuple[int, int], held_out_range: tuple[int, int]) -> TrainingResult:
        coders = {key: trainer.finish().cpu() for key, trainer in self.trainers.items()}
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return TrainingResult(
            coders=coders,
            tokens=self.tokens,
            steps=self.steps,
            stopped=stopped,
            train_range=train_range,
            held_out_range=held_out_range,
            final=self.final,
            tokens_per_second=self.tokens / elapsed,
        )


def train_sparse_coders(
    capture: str | Path | CaptureReader,
    config: TrainingConfig,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Train ``config.kinds`` coders for ``config.layers`` of a complete capture, in one pass over its shards."""
    reader = capture if isinstance(capture, CaptureReader) else CaptureReader(capture)
    layers = list(reader.layers if config.layers is None else sorted(set(config.layers)))
    for layer in layers:
        reader.require_layer(layer)
    n_train = reader.n_tokens - config.held_out_tokens
    if n_train < config.batch_size:
        raise ValueError(
            f"the capture has {reader.n_tokens} tokens; holding out {config.held_out_tokens} leaves {max(n_train, 0)} "
            f"to train on, fewer than one batch of {config.batch_size}; capture more tokens or hold out fewer"
        )
    budget = config.n_tokens or n_train
    stats = normalization_stats(reader, layers, n_train, config.norm_tokens)
    hookpoints = reader.manifest.get("hookpoints") or {}
    run = _SideBySide(layers, reader.d_model, hookpoints, stats, config, budget, on_step, progress)
    stopped = False
    epoch = 0
    while not run.done and not stopped:
        for batches in reader.iter_multi_batches(
            layers, config.batch_size, stop=n_train, shuffle=config.shuffle, seed=config.seed + epoch, drop_last=True
        ):
            run.step({layer: (b.inputs, b.outputs) for layer, b in batches.items()})
            if run.done:
                break
            if should_stop is not None and should_stop():
                stopped = True
                break
        epoch += 1
    return run.result(stopped, (0, n_train), (n_train, reader.n_tokens))


def train_sparse_coders_online(
    model: nn.Module,
    documents: Iterable[Sequence[int]],
    capture_config: CaptureConfig,
    config: TrainingConfig,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    on_step: StepCallback | None = None,
    mix_batches: int = 4,
) -> TrainingResult:
    """Train with the teacher's forward pass in the loop (no shards: for when the disk is short).

    The tokens of ``documents`` (re-iterable: read twice) go through ``model`` as a capture would
    (``capture_config`` selects layers, sequence length, token budget). The first ``held_out_tokens`` of
    the stream are never trained on (capture them to evaluate); the first ``norm_tokens`` after them give
    the normalisation; tokens are mixed across ``mix_batches`` batches before each step. One pass: the
    budget is at most the stream's tokens.
    """
    if iter(documents) is documents:
        raise ValueError("online training reads the documents twice; pass a list or another re-iterable")
    plan = plan_capture(model, capture_config)
    layers = [layer for layer in plan.layers if config.layers is None or layer in config.layers]
    if not layers:
        raise ValueError(f"none of the layers {config.layers} is among the hooked layers {plan.layers}")
    skip = config.held_out_tokens
    budget = min(config.n_tokens or capture_config.n_tokens, max(0, capture_config.n_tokens - skip))
    if budget < config.batch_size:
        raise ValueError(
            f"the token budget leaves {budget} tokens to train on after holding out {skip}, fewer than one batch"
        )
    stats = {layer: (RunningStats(plan.d_model), RunningStats(plan.d_model)) for layer in layers}
    norm_config = replace(capture_config, n_tokens=min(capture_config.n_tokens, skip + config.norm_tokens))
    with closing(stream_mlp_activations(model, documents, norm_config, skip_tokens=skip)) as stream:
        for step in stream:
            for layer in layers:
                x_in, x_out = step.activations[layer]
                stats[layer][0].update(x_in.float().cpu())
                stats[layer][1].update(x_out.float().cpu())
    hookpoints = {str(k): v for k, v in plan.hookpoints.items()}
    run = _SideBySide(layers, plan.d_model, hookpoints, stats, config, budget, on_step, progress)
    device = torch.device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    pending: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {layer: [] for layer in layers}
    pending_n = 0
    stopped = False

    def flush(keep_rest: bool) -> None:
        nonlocal pending_n
        merged = {
            layer: (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            for layer, parts in pending.items()
        }
        perm = torch.randperm(pending_n, generator=generator) if config.shuffle else torch.arange(pending_n)
        full = pending_n // config.batch_size * config.batch_size
        for a in range(0, full, config.batch_size):
            idx = perm[a : a + config.batch_size]
            run.step({layer: (x_in[idx], x_out[idx]) for layer, (x_in, x_out) in merged.items()})
            if run.done:
                return
        rest = perm[full:]
        pending_n = len(rest) if keep_rest else 0
        for layer, (x_in, x_out) in merged.items():
            pending[layer] = [(x_in[rest], x_out[rest])] if keep_rest and len(rest) else []

    with closing(stream_mlp_activations(model, documents, capture_config, skip_tokens=skip)) as stream:
        for step in stream:
            for layer in layers:
                x_in, x_out = step.activations[layer]
                pending[layer].append((x_in.float().to(device), x_out.float().to(device)))
            pending_n += int(step.token_ids.shape[0])
            if pending_n >= mix_batches * config.batch_size:
                flush(keep_rest=True)
            if run.done:
                break
            if should_stop is not None and should_stop():
                stopped = True
                break
    if not stopped and not run.done and pending_n >= config.batch_size:
        flush(keep_rest=False)
    return run.result(stopped, (skip, skip + run.tokens), (0, skip))


def train_on_tensors(
    coder: SparseCoder,
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    n_tokens: int,
    batch_size: int = 1024,
    lr: float | None = None,
    optimizer: str = OPTIMIZERS[0],
    input_lr_scale: float = 0.25,
    auxk_alpha: float = 1 / 32,
    dead_after_tokens: int | None = None,
    seed: int = 0,
    on_step: StepCallback | None = None,
) -> SparseCoder:
    """Train ``coder`` on in-memory ``(N, d)`` source/target tensors (tests, synthetic data, small probes).

    Sets the coder's normalisation from the data, then runs the same step as :func:`train_sparse_coders`.
    """
    si, so = RunningStats(source.shape[1]), RunningStats(target.shape[1])
    si.update(source)
    so.update(target)
    i, o = si.result(), so.result()
    coder.set_normalization(i.mean, i.scale, o.mean, o.scale)
    trainer = CoderTrainer(
        coder.train(),
        lr,
        auxk_alpha,
        dead_after_tokens=dead_after_tokens or max(10 * batch_size, n_tokens // 10),
        optimizer=optimizer,
        input_lr_scale=input_lr_scale,
    )
    generator = torch.Generator().manual_seed(seed)
    done, step = 0, 0
    while done < n_tokens:
        perm = torch.randperm(source.shape[0], generator=generator)
        for a in range(0, source.shape[0] - batch_size + 1, batch_size):
            idx = perm[a : a + batch_size]
            metrics = trainer.step(source[idx], target[idx])
            done += batch_size
            if on_step is not None:
                on_step(step=step, tokens=done, **metrics)
            step += 1
            if done >= n_tokens:
                break
    return trainer.finish()
