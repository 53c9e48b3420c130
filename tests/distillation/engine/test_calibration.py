"""Healing by distillation: it lowers the KL to the teacher, its targets are cached once, and a run stopped after
its last checkpoint resumes to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from distillation.engine.calibration import CalibrationError, heal, teacher_targets
from distillation.engine.importance import compute_importance
from distillation.engine.pruning import prune
from distillation.engine.recipes import Calibration, propose


@pytest.fixture
def setup(model, token_windows, tmp_path):
    with torch.no_grad():  # a confident teacher (random weights predict almost uniformly): something to learn
        model.model.embed_tokens.weight.mul_(8)
    report = compute_importance(model, iter(token_windows), sample_windows=2)
    recipe = propose(report, targets=(0.55,))[0]
    settings = Calibration(token_budget=32 * 4 * 12, seq_len=32, batch_size=4, learning_rate=2e-3, top_k=16,
                           checkpoint_every=4)  # fmt: skip
    targets = teacher_targets(model, token_windows, tmp_path / "targets", k=16)
    return model, recipe, settings, targets


def test_healing_lowers_the_kl_to_the_teacher(setup, tmp_path):
    teacher, recipe, settings, targets = setup
    student = prune(teacher, recipe)
    steps = []
    result = heal(student, targets, settings, tmp_path / "run", on_step=lambda step, total, **m: steps.append(m))
    assert result.steps == 12 and len(steps) == 12 and steps[-1]["tokens_per_second"] > 0
    first = sum(p["kl"] for p in result.history[:3]) / 3
    last = sum(p["kl"] for p in result.history[-3:]) / 3
    assert last < first * 0.9, (first, last)


def test_targets_are_cached_and_reused(setup, tmp_path, token_windows):
    teacher, _, _, targets = setup
    names = sorted(p.name for p in targets.folder.iterdir())
    assert names == ["targets-00000.safetensors", "targets.json"]
    with torch.no_grad():  # a cache hit computes nothing: a broken teacher would fail otherwise
        again = teacher_targets(None, token_windows, targets.folder, k=16)  # type: ignore[arg-type]
    ids, top, logp = again.batch(torch.tensor([3, 0]))
    assert ids.tolist() == [token_windows[3], token_windows[0]] and top.shape == (2, 32, 16)
    assert torch.all(logp[..., 0] >= logp[..., 1])  # strongest first


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_weights(setup, tmp_path):
    teacher, recipe, settings, targets = setup
    whole = prune(teacher, recipe)
    heal(whole, targets, settings, tmp_path / "whole")
    first = prune(teacher, recipe)
    heal(first, targets, settings, tmp_path / "killed", stop_after=6)  # last checkpoint at step 4
    resumed = prune(teacher, recipe)
    result = heal(resumed, targets, settings, tmp_path / "killed")
    assert result.resumed_from == 4 and result.steps == 12
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_budget_below_one_batch_is_refused(setup, tmp_path):
    teacher, recipe, _, targets = setup
    with pytest.raises(CalibrationError, match="less than one batch"):
        heal(prune(teacher, recipe), targets, Calibration(token_budget=10, seq_len=32, batch_size=4), tmp_path)
    with pytest.raises(CalibrationError, match="too small for the sequence length"):
        teacher_targets(teacher, [], tmp_path / "none")
