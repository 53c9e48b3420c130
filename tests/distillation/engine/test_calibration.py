"""Healing by distillation: it lowers the KL to the teacher, its targets are cached once, and a run stopped after
its last checkpoint resumes to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from distillation.engine.calibration import CalibrationError, heal, learning_rate_factor, teacher_targets
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
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # knocked away from its teacher: noise of each weight's own scale on every layer
        for p in student.model.layers.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * p.std())
    steps = []
    result = heal(student, targets, settings, tmp_path / "run", on_step=lambda step, total, **m: steps.append(m))
    assert result.steps == 12 and len(steps) == 12 and steps[-1]["tokens_per_second"] > 0
    first = sum(p["kl"] for p in result.history[:3]) / 3
    last = sum(p["kl"] for p in result.history[-3:]) / 3
    assert last < first * 0.5, (first, last)


def test_the_learning_rate_warms_up_then_decays_to_its_floor():
    settings = Calibration(learning_rate=1e-3, warmup_fraction=0.1, final_lr_fraction=0.1)
    factors = [learning_rate_factor(step, 100, settings) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 11) and factors[9] == pytest.approx(10 / 11)  # 10 warm-up steps
    assert factors[10] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:11], strict=True))  # rising, then
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # falling
    flat = Calibration(warmup_fraction=0.0, final_lr_fraction=1.0)
    assert {learning_rate_factor(s, 50, flat) for s in range(50)} == {1.0}


def test_targets_are_cached_and_reused(setup, tmp_path, token_windows):
    teacher, _, _, targets = setup
    names = sorted(p.name for p in targets.folder.iterdir())
    assert names == ["targets-00000.safetensors", "targets.json"]
    with torch.no_grad():  # a cache hit computes nothing: a broken teacher would fail otherwise
        again = teacher_targets(None, token_windows, targets.folder, k=16)  # type: ignore[arg-type]
    ids, top, logp = again.batch(torch.tensor([3, 0]))
    assert ids.tolist() == [token_windows[3], token_windows[0]] and top.shape == (2, 32, 16)
    assert torch.all(logp[..., 0] >= logp[..., 1])  # strongest first


@pytest.mark.parametrize("per_shard", [256, 2])
def test_each_window_gets_its_own_targets_in_any_order(model, token_windows, tmp_path, monkeypatch, per_shard):
    """The batch order is random: window i's targets must be the teacher's distribution on window i, also when
    the batch spans shards (a batch that paired windows with other windows' targets trains toward noise)."""
    from distillation.engine import calibration

    monkeypatch.setattr(calibration, "WINDOWS_PER_SHARD", per_shard)
    with torch.no_grad():  # confident, so that each window's distribution is its own
        model.model.embed_tokens.weight.mul_(8)
    targets = teacher_targets(model, token_windows, tmp_path / "t", k=8)
    index = torch.tensor([3, 0, 5, 1])
    ids, top, logp = targets.batch(index)
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
    assert ids.tolist() == [token_windows[i] for i in index.tolist()]
    assert torch.allclose(full.gather(-1, top), logp, atol=2e-2)  # the stored values are this window's
    assert torch.allclose(full.topk(8, dim=-1).values, logp, atol=2e-2)  # and they are its top 8


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
