"""Healing a pruned student by distillation from its teacher, resumable from checkpoints.

**Teacher targets** are computed once per (teacher, dataset, budget, window) and shared by every build: for each
window the teacher's top-k next-token log-probabilities (indices int32, values float16) are written as safetensors
shards (full-vocabulary targets would take ~6 GB for 61k tokens of SmolLM2; k = 64 takes 24 MB) with a manifest
written last, so a cache is either whole or rebuilt.

**Training**: AdamW on the student, the rate warmed up linearly and then decayed on a cosine (a function of the
step alone, so a resumed run follows the same schedule); the loss mixes the KL divergence from the teacher's
distribution to the student's — over the teacher's top-k tokens and one bucket for the rest (see
:func:`distillation_loss`) — and the next-token cross-entropy. Batches are taken in a fixed order, so the run is
deterministic on the CPU; every ``checkpoint_every`` steps the student, the optimizer, the step and the RNG state are
written (atomically) to the work folder, and a new call resumes from the last checkpoint and ends equal to an
uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .recipes import Calibration

TARGETS_MANIFEST = "targets.json"
CHECKPOINT = "checkpoint.json"
STUDENT_WEIGHTS = "student.safetensors"
WINDOWS_PER_SHARD = 256


class CalibrationError(ValueError):
    """Settings or data the healing cannot run with."""


@dataclass
class TeacherTargets:
    """The cached top-k targets: windows (token ids) and, per window, the teacher's top-k log-probabilities."""

    folder: Path
    windows: torch.Tensor  # (N, T) int64
    k: int

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token ids, top-k indices, top-k log-probs) of the windows ``index``."""
        shard_of = index // WINDOWS_PER_SHARD
        top_ids = torch.empty((len(index), self.windows.shape[1], self.k), dtype=torch.long)
        top_logps = torch.empty((len(index), self.windows.shape[1], self.k), dtype=torch.float32)
        for shard in shard_of.unique().tolist():
            tensors = load_file(str(self.folder / f"targets-{shard:05d}.safetensors"))
            slots = (shard_of == shard).nonzero().flatten()  # where each of this shard's windows goes in the batch
            local = index[slots] - shard * WINDOWS_PER_SHARD
            top_ids[slots] = tensors["indices"][local].long()
            top_logps[slots] = tensors["logprobs"][local].float()
        return self.windows[index], top_ids, top_logps


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


@torch.no_grad()
def teacher_targets(
    teacher: nn.Module,
    windows: Sequence[Sequence[int]],
    folder: str | Path,
    *,
    k: int = 64,
    batch_size: int = 4,
    progress: Callable[..., None] | None = None,
) -> TeacherTargets:
    """The teacher's top-k log-probabilities for every window, from the cache in ``folder`` or computed into it."""
    folder = Path(folder)
    manifest = folder / TARGETS_MANIFEST
    ids = torch.tensor([list(w) for w in windows], dtype=torch.long)
    if ids.ndim != 2 or len(ids) == 0:
        raise CalibrationError("no calibration windows: the dataset is too small for the sequence length")
    if manifest.exists():
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if meta.get("k") == k and meta.get("shape") == list(ids.shape):
            return TeacherTargets(folder, ids, k)
    folder.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    device = next(teacher.parameters()).device
    for shard_start in range(0, len(ids), WINDOWS_PER_SHARD):
        chunk = ids[shard_start : shard_start + WINDOWS_PER_SHARD]
        indices, logprobs = [], []
        for b in chunk.split(batch_size):
            logits = teacher(input_ids=b.to(device)).logits.float()
            top = F.log_softmax(logits, dim=-1).topk(k, dim=-1)
            indices.append(top.indices.to(torch.int32).cpu())
            logprobs.append(top.values.to(torch.float16).cpu())
            if progress is not None:
                progress(shard_start + sum(len(x) for x in indices), len(ids), phase="targets")
        name = folder / f"targets-{shard_start // WINDOWS_PER_SHARD:05d}.safetensors"
        tensors = {"indices": torch.cat(indices), "logprobs": torch.cat(logprobs)}
        _write_atomic(name, lambda p, t=tensors: save_file(t, str(p)))
    meta = {"k": k, "shape": list(ids.shape), "windows_per_shard": WINDOWS_PER_SHARD}
    _write_atomic(manifest, lambda p: p.write_text(json.dumps(meta), encoding="utf-8"))
    return TeacherTargets(folder, ids, k)


def _log_rest(logprobs: torch.Tensor) -> torch.Tensor:
    """log(1 − Σ exp(logprobs)) over the last dimension: the log-probability of every other token."""
    top_mass = torch.logsumexp(logprobs, dim=-1).clamp(max=-1e-6)
    return torch.log(-torch.expm1(top_mass))


def distillation_loss(
    student_logits: torch.Tensor,
    top_indices: torch.Tensor,
    top_logprobs: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float,
    mix: dict[str, float],
) -> dict[str, torch.Tensor]:
    """``{"loss", "kl", "ce"}``: the KL divergence from the teacher to the student over the teacher's top-k tokens
    plus one bucket for all other tokens (exact at temperature 1: the stored values are the teacher's true
    log-probabilities), or — at another temperature T — between both distributions renormalised over the top k,
    times T²; and the student's next-token cross-entropy (``targets``: the next token ids)."""
    t = float(temperature)
    if t == 1.0:
        student = F.log_softmax(student_logits.float(), dim=-1).gather(-1, top_indices)
        teacher = top_logprobs
        kl = (teacher.exp() * (teacher - student)).sum(-1)
        teacher_rest, student_rest = _log_rest(teacher), _log_rest(student)
        kl = (kl + teacher_rest.exp() * (teacher_rest - student_rest)).mean()
    else:
        student = F.log_softmax(student_logits.float().gather(-1, top_indices) / t, dim=-1)
        teacher = F.log_softmax(top_logprobs / t, dim=-1)
        kl = (teacher.exp() * (teacher - student)).sum(-1).mean() * t * t
    ce = F.cross_entropy(student_logits[:, :-1].reshape(-1, student_logits.shape[-1]).float(), targets.reshape(-1))
    loss = mix.get("kl", 1.0) * kl + mix.get("ce", 0.0) * ce
    return {"loss": loss, "kl": kl.detach(), "ce": ce.detach()}


def learning_rate_factor(step: int, total: int, settings: Calibration) -> float:
    """The fraction of the learning rate at ``step`` (0-based) of ``total``: linear warm-up over
    ``warmup_fraction`` of the steps, then a cosine from 1 down to ``final_lr_fraction`` at the last step."""
    warmup = int(total * settings.warmup_fraction)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(total - 1 - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    low = settings.final_lr_fraction
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class HealingResult:
    steps: int
    tokens: int
    seconds: float
    resumed_from: int
    history: list[dict[str, float]]


def heal(
    student: nn.Module,
    targets: TeacherTargets,
    settings: Calibration,
    work_dir: str | Path,
    *,
    seed: int = 0,
    on_step: Callable[..., None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_after: int | None = None,
) -> HealingResult:
    """Train ``student`` (in place) toward the teacher's targets for ``settings.token_budget`` tokens.

    Resumes from ``work_dir``'s checkpoint when there is one. ``stop_after`` (steps) ends early, as a killed
    worker would after its last checkpoint (tests). ``on_step(step, total, kl=, ce=, loss=, tokens_per_second=)``.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    n_windows, seq_len = targets.windows.shape
    batch = settings.batch_size
    total = settings.token_budget // (batch * seq_len)
    if total < 1:
        raise CalibrationError(
            f"a token budget of {settings.token_budget:,} is less than one batch ({batch} × {seq_len} tokens)"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.cat(
        [torch.randperm(n_windows, generator=generator) for _ in range(math.ceil(total * batch / n_windows))]
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    step, history = 0, []
    pointer = work_dir / CHECKPOINT
    if pointer.exists():
        folder = work_dir / json.loads(pointer.read_text(encoding="utf-8"))["folder"]
        state = torch.load(folder / "state.pt", weights_only=True)
        student.load_state_dict(load_file(str(folder / STUDENT_WEIGHTS)), strict=False)
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), json.loads(state["history"])
    resumed_from = step
    device = next(student.parameters()).device
    student.train()
    started = time.monotonic()
    while step < total:
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped")
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * learning_rate_factor(step, total, settings)
        index = order[step * batch : (step + 1) * batch]
        ids, top_indices, top_logprobs = targets.batch(index)
        ids, top_indices, top_logprobs = ids.to(device), top_indices.to(device), top_logprobs.to(device)
        logits = student(input_ids=ids).logits
        losses = distillation_loss(logits, top_indices, top_logprobs, ids[:, 1:], temperature=settings.kd_temperature,
                                   mix=settings.loss_mix)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        step += 1
        point = {
            "step": step,
            "loss": float(losses["loss"].detach()),
            "kl": float(losses["kl"]),
            "ce": float(losses["ce"]),
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(point)
        elapsed = max(time.monotonic() - started, 1e-9)
        if on_step is not None:
            on_step(step, total, tokens_per_second=(step - resumed_from) * batch * seq_len / elapsed,
                    **{k: v for k, v in point.items() if k != "step"})  # fmt: skip
        if step % settings.checkpoint_every == 0 or step == total:
            _save_checkpoint(student, optimizer, step, history, work_dir)
        if stop_after is not None and step >= stop_after:
            break
    student.eval()
    return HealingResult(step, (step - resumed_from) * batch * seq_len, time.monotonic() - started, resumed_from,
                         history)  # fmt: skip


def _save_checkpoint(student: nn.Module, optimizer: Any, step: int, history: list, work_dir: Path) -> None:
    """Student weights and optimizer state in a folder of their own, then the pointer to it (atomically): a kill
    at any moment leaves the previous checkpoint or this one, never a mix."""
    tied = getattr(student.config, "tie_word_embeddings", False)
    weights = {k: v.detach().contiguous().cpu() for k, v in student.state_dict().items()
               if not (tied and k == "lm_head.weight")}  # fmt: skip
    folder = work_dir / f"step-{step:07d}"
    folder.mkdir(exist_ok=True)
    save_file(weights, str(folder / STUDENT_WEIGHTS))
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "history": json.dumps(history)}, folder / "state.pt")
    pointer = work_dir / CHECKPOINT
    previous = json.loads(pointer.read_text(encoding="utf-8"))["folder"] if pointer.exists() else None
    _write_atomic(pointer, lambda p: p.write_text(json.dumps({"folder": folder.name, "step": step}), encoding="utf-8"))
    if previous and previous != folder.name:
        shutil.rmtree(work_dir / previous, ignore_errors=True)


def final_weights(work_dir: str | Path) -> Path:
    """The last checkpoint's student weights."""
    work_dir = Path(work_dir)
    return work_dir / json.loads((work_dir / CHECKPOINT).read_text(encoding="utf-8"))["folder"] / STUDENT_WEIGHTS
