"""How much each part of a llama teacher matters on a token stream: layers, attention heads / KV groups, MLP neurons.

One pass over the windows with forward hooks accumulates, in memory bounded by the model's size (never the number
of tokens):

* **block influence** (ShortGPT, arXiv 2403.03853): the mean over tokens of ``1 − cos(h_in, h_out)`` of each
  decoder block — a block that barely turns its input is a candidate to drop;
* **head contribution norm**: the mean L2 norm of each query head's contribution to the block's output (its
  output through its slice of ``o_proj``);
* **neuron scores** (Wanda, arXiv 2306.11695, aggregated per neuron): for neuron ``j`` of a layer's MLP,
  ``‖X_j‖₂ · Σ_i |W_down[i, j]|`` where ``X_j`` is the neuron's activation (``down_proj``'s input) over every token —
  the design documents' ``Importance = |W_ij|·‖X_j‖`` summed over the weights the neuron feeds — and its mean
  ``|X_j|``.

Then, on a small sample of windows, the **loss increase** of next-token cross-entropy when a block is skipped
(replaced by the identity) and when a KV group is masked (its query heads' outputs zeroed): the causal check of
what the activation scores suggest. Grouped-query attention is respected: heads are scored, groups are masked and
pruned (SmolLM2: 9 query heads in 3 KV groups).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .families import TeacherArch, check_supported, decoder_layers

Progress = Callable[..., None]


@dataclass
class ImportanceReport:
    """Scores per component; lists indexed by layer (then head, KV group or neuron)."""

    arch: TeacherArch
    block_influence: list[float]
    skip_loss: list[float]
    head_norm: list[list[float]]
    kv_loss: list[list[float]]
    neuron_score: list[list[float]]
    neuron_mean_abs: list[list[float]]
    base_loss: float
    n_tokens: int
    sample_tokens: int
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def kv_group_norm(self) -> list[list[float]]:
        """Head norms summed per KV group."""
        g = self.arch.group_size
        return [[sum(row[k * g : (k + 1) * g]) for k in range(self.arch.kv_heads)] for row in self.head_norm]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportanceReport:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["arch"] = TeacherArch.from_json(data["arch"])
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """What a page charts: everything per layer and head, and each layer's neuron score distribution."""
        per_layer = []
        for scores in self.neuron_score:
            t = torch.tensor(scores, dtype=torch.float64)
            q = torch.quantile(t, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)).tolist()
            per_layer.append({"p5": q[0], "p25": q[1], "median": q[2], "p75": q[3], "p95": q[4], "max": float(t.max())})
        return {
            "layers": {"influence": self.block_influence, "skip_loss": self.skip_loss},
            "heads": {"score": self.head_norm},
            "kv_groups": {"loss": self.kv_loss, "norm": self.kv_group_norm()},
            "neurons": {"per_layer": per_layer},
            "base_loss": self.base_loss,
        }


def windows(documents: Iterable[Sequence[int]], seq_len: int, budget: int) -> Iterator[list[int]]:
    """Windows of ``seq_len`` tokens cut from consecutive documents (joined), until ``budget`` tokens."""
    buffer: list[int] = []
    given = 0
    for ids in documents:
        buffer.extend(ids)
        while len(buffer) >= seq_len and given + seq_len <= budget:
            yield buffer[:seq_len]
            buffer = buffer[seq_len:]
            given += seq_len
        if given + seq_len > budget:
            return


def _batches(items: Iterable[list[int]], size: int) -> Iterator[list[list[int]]]:
    batch: list[list[int]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def next_token_loss(model: nn.Module, batch: torch.Tensor) -> float:
    """Mean next-token cross-entropy of ``model`` on ``batch`` (B, T)."""
    logits = model(input_ids=batch).logits[:, :-1].float()
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)))


class _Accumulator:
    """Forward hooks gathering the activation statistics of every layer."""

    def __init__(self, model: nn.Module, arch: TeacherArch) -> None:
        self.arch = arch
        n = arch.layers
        self.influence = torch.zeros(n, dtype=torch.float64)
        self.head_norm = torch.zeros(n, arch.heads, dtype=torch.float64)
        self.neuron_sq = torch.zeros(n, arch.intermediate, dtype=torch.float64)
        self.neuron_abs = torch.zeros(n, arch.intermediate, dtype=torch.float64)
        self.tokens = 0
        self.handles: list[Any] = []
        for i, layer in enumerate(decoder_layers(model)):
            self.handles.append(layer.register_forward_hook(self._block_hook(i), with_kwargs=True))
            self.handles.append(layer.self_attn.o_proj.register_forward_pre_hook(self._heads_hook(i)))
            self.handles.append(layer.mlp.down_proj.register_forward_pre_hook(self._neurons_hook(i)))

    def _block_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            cos = F.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
            self.influence[i] += float((1 - cos).sum())

        return hook

    def _heads_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            a = self.arch
            heads = args[0].float().reshape(-1, a.heads, a.head_dim)
            weight = module.weight.float().reshape(a.hidden, a.heads, a.head_dim)
            # Each head's contribution to the block's output: its slice of o_proj applied to its output.
            contribution = torch.einsum("thd,ohd->tho", heads, weight)
            self.head_norm[i] += contribution.norm(dim=-1).sum(0).double().cpu()

        return hook

    def _neurons_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].float().reshape(-1, args[0].shape[-1])
            self.neuron_sq[i] += (x * x).sum(0).double().cpu()
            self.neuron_abs[i] += x.abs().sum(0).double().cpu()

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class _SkipLayer:
    """While in use, decoder layer ``index`` returns its input (the block is skipped)."""

    def __init__(self, model: nn.Module, index: int) -> None:
        self.layer = decoder_layers(model)[index]

    def __enter__(self) -> _SkipLayer:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            h_in = args[0] if args else kwargs["hidden_states"]
            return (h_in, *output[1:]) if isinstance(output, tuple) else h_in

        self.handle = self.layer.register_forward_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


class _MaskGroup:
    """While in use, the query heads of KV group ``group`` in layer ``index`` output zeros."""

    def __init__(self, model: nn.Module, arch: TeacherArch, index: int, group: int) -> None:
        self.o_proj = decoder_layers(model)[index].self_attn.o_proj
        g, d = arch.group_size, arch.head_dim
        self.span = (group * g * d, (group + 1) * g * d)

    def __enter__(self) -> _MaskGroup:
        start, stop = self.span

        def hook(module: nn.Module, args: tuple) -> tuple:
            x = args[0].clone()
            x[..., start:stop] = 0
            return (x, *args[1:])

        self.handle = self.o_proj.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


@torch.no_grad()
def compute_importance(
    model: nn.Module,
    token_windows: Iterable[list[int]],
    *,
    n_windows: int | None = None,
    batch_size: int = 4,
    sample_windows: int = 8,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportanceReport:
    """Score every layer, head, KV group and MLP neuron of ``model`` on ``token_windows`` (equal-length lists).

    ``n_windows`` (when known) drives the progress; the first ``sample_windows`` windows are kept for the skip and
    mask losses (layers × (1 + KV groups) forward passes over them).
    """
    arch = check_supported(model)
    model.eval()
    device = _device(model)
    started = time.monotonic()
    sample: list[list[int]] = []
    accumulator = _Accumulator(model, arch)
    done_windows = 0
    try:
        for batch in _batches(token_windows, batch_size):
            if should_stop is not None and should_stop():
                raise InterruptedError("stopped")
            if len(sample) < sample_windows:
                sample.extend(batch[: sample_windows - len(sample)])
            ids = torch.tensor(batch, dtype=torch.long, device=device)
            model(input_ids=ids)
            accumulator.tokens += ids.numel()
            done_windows += len(batch)
            if progress is not None:
                elapsed = max(time.monotonic() - started, 1e-9)
                progress(done_windows, n_windows or done_windows, phase="scores",
                         tokens_per_second=accumulator.tokens / elapsed)  # fmt: skip
    finally:
        accumulator.close()
    tokens = accumulator.tokens
    if tokens == 0:
        raise ValueError("no tokens to score: the dataset gave no window of the sequence length")
    down = [layer.mlp.down_proj.weight.detach().abs().sum(0).double().cpu() for layer in decoder_layers(model)]
    neuron_score = [(accumulator.neuron_sq[i].sqrt() * down[i]).tolist() for i in range(arch.layers)]

    # The causal check on the sample: loss increase when a block is skipped or a KV group masked.
    sample_ids = torch.tensor(sample, dtype=torch.long, device=device)

    def loss() -> float:
        return sum(next_token_loss(model, b) * len(b) for b in sample_ids.split(batch_size)) / len(sample_ids)

    base = loss()
    checks = arch.layers * (1 + arch.kv_heads)
    skip_loss, kv_loss = [], []
    for i in range(arch.layers):
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped")
        with _SkipLayer(model, i):
            skip_loss.append(loss() - base)
        row = []
        for g in range(arch.kv_heads):
            with _MaskGroup(model, arch, i, g):
                row.append(loss() - base)
        kv_loss.append(row)
        if progress is not None:
            progress((i + 1) * (1 + arch.kv_heads), checks, phase="losses")
    return ImportanceReport(
        arch=arch,
        block_influence=(accumulator.influence / tokens).tolist(),
        skip_loss=skip_loss,
        head_norm=(accumulator.head_norm / tokens).tolist(),
        kv_loss=kv_loss,
        neuron_score=neuron_score,
        neuron_mean_abs=(accumulator.neuron_abs / tokens).tolist(),
        base_loss=base,
        n_tokens=tokens,
        sample_tokens=int(sample_ids.numel()),
        seconds=time.monotonic() - started,
    )


def magnitude_report(model: nn.Module) -> ImportanceReport:
    """Scores from the weights alone (no data), for the magnitude baseline: neuron ``j`` scores
    ``Σ_i |W_down[i, j]| · ‖W_up[j]‖``, a KV group the norm of its key and value rows (in ``kv_loss``, which
    recipes rank groups by), a head the norm of its query rows; layers all score alike."""
    arch = check_supported(model)
    neuron, heads, groups = [], [], []
    d = arch.head_dim
    for layer in decoder_layers(model):
        mlp, attn = layer.mlp, layer.self_attn
        neuron.append((mlp.down_proj.weight.abs().sum(0) * mlp.up_proj.weight.norm(dim=1)).double().tolist())
        heads.append(attn.q_proj.weight.reshape(arch.heads, d, -1).norm(dim=(1, 2)).double().tolist())
        kv = torch.cat([attn.k_proj.weight, attn.v_proj.weight], dim=1).reshape(arch.kv_heads, d, -1)
        groups.append(kv.norm(dim=(1, 2)).double().tolist())
    return ImportanceReport(
        arch=arch, block_influence=[1.0] * arch.layers, skip_loss=[0.0] * arch.layers, head_norm=heads,
        kv_loss=groups, neuron_score=neuron, neuron_mean_abs=neuron, base_loss=0.0, n_tokens=0, sample_tokens=0,
        extra={"method": "magnitude"},
    )  # fmt: skip


def weight_statistics(model: nn.Module) -> list[dict[str, float]]:
    """Per layer: mean |W| and standard deviation of all its linear weights (design document 004's weight-range
    strategy reads these)."""
    stats = []
    for layer in decoder_layers(model):
        weights = torch.cat([m.weight.detach().float().flatten() for m in layer.modules() if isinstance(m, nn.Linear)])
        stats.append({"mean_abs": float(weights.abs().mean()), "std": float(weights.std())})
    return stats
