"""Recipes: proposals at their parameter targets, strategies from real scores, clear validation errors."""

from __future__ import annotations

import random

import pytest

from distillation.engine.families import TeacherArch
from distillation.engine.importance import ImportanceReport
from distillation.engine.recipes import (
    Calibration,
    Recipe,
    by_importance_ratio,
    by_layer_count,
    by_weight_range,
    estimate,
    layer_drop_last,
    layer_drop_lowest_influence,
    params_of,
    propose,
    same_shapes,
    validate,
)

#: SmolLM2-135M's shape.
SMOLLM2 = TeacherArch(layers=30, heads=9, kv_heads=3, hidden=576, intermediate=1536, vocab=49152, head_dim=64)


def fake_report(arch: TeacherArch = SMOLLM2, seed: int = 0) -> ImportanceReport:
    rng = random.Random(seed)
    return ImportanceReport(
        arch=arch,
        block_influence=[rng.random() for _ in range(arch.layers)],
        skip_loss=[rng.random() for _ in range(arch.layers)],
        head_norm=[[rng.random() for _ in range(arch.heads)] for _ in range(arch.layers)],
        kv_loss=[[rng.random() for _ in range(arch.kv_heads)] for _ in range(arch.layers)],
        neuron_score=[[rng.random() for _ in range(arch.intermediate)] for _ in range(arch.layers)],
        neuron_mean_abs=[[0.0] * arch.intermediate for _ in range(arch.layers)],
        base_loss=2.5, n_tokens=1000, sample_tokens=100,
    )  # fmt: skip


def test_smollm2_has_its_parameter_count():
    assert SMOLLM2.params == 134_515_008  # what transformers counts for SmolLM2-135M (tied embeddings)


def test_proposals_hit_75_55_and_40_percent_and_are_valid():
    report = fake_report()
    recipes = propose(report)
    assert [r.name for r in recipes] == ["75 % student", "55 % student", "40 % student"]
    for recipe, target in zip(recipes, (0.75, 0.55, 0.40), strict=True):
        assert validate(recipe, SMOLLM2) == []
        assert params_of(recipe) / SMOLLM2.params == pytest.approx(target, abs=0.03)
        assert recipe.width % 64 == 0
    assert recipes[0].kv_groups == 3 and recipes[1].kv_groups == 2  # width before depth; groups below 70 %
    assert len(recipes[2].layers_kept) < 30 and 0 not in {d["index"] for d in recipes[2].layers_dropped}
    # The kept neurons are the highest-scoring ones, not the first ones.
    layer = recipes[1].layers_kept[0]
    kept, scores = set(recipes[1].mlp_neurons_kept[0]), report.neuron_score[layer]
    assert min(scores[i] for i in kept) >= max(scores[i] for i in range(1536) if i not in kept)


def test_strategies_use_the_scores_and_say_why_layers_go():
    report = fake_report()
    by_count = by_layer_count(report, None, 20)
    most = sorted(range(30), key=lambda i: -report.skip_loss[i])[:20]
    assert by_count.layers_kept == sorted(most) and validate(by_count, SMOLLM2) == []
    assert all("raised the loss by" in d["reason"] for d in by_count.layers_dropped)
    ratio = by_importance_ratio(report, None, 0.6)
    assert params_of(ratio) / SMOLLM2.params == pytest.approx(0.6, abs=0.03)
    stats = [{"mean_abs": 0.01 * i, "std": 0.02} for i in range(30)]
    ranged = by_weight_range(stats, report, 0.05, 0.2)
    assert ranged.layers_kept == list(range(5, 21))
    with pytest.raises(ValueError, match="no layer has a mean_abs in"):
        by_weight_range(stats, report, 5, 6)
    assert layer_drop_last(report, 6).layers_kept == list(range(24))
    lowest = layer_drop_lowest_influence(report, 6)
    dropped = {d["index"] for d in lowest.layers_dropped}
    assert dropped == set(sorted(range(30), key=lambda i: report.block_influence[i])[:6])
    twin = same_shapes(ratio, fake_report(seed=1), name="magnitude", reason="baseline")
    assert (twin.layers_kept, twin.kv_groups, twin.width) == (ratio.layers_kept, ratio.kv_groups, ratio.width)
    assert twin.mlp_neurons_kept != ratio.mlp_neurons_kept


def bad(recipe: Recipe, **changes: object) -> list[str]:
    data = recipe.to_json() | changes
    return validate(Recipe.from_json(data), SMOLLM2)


def test_invalid_recipes_get_clear_messages():
    recipe = propose(fake_report(), targets=(0.75,))[0]
    assert any("keeps 31 layers; the teacher has 30" in p for p in bad(recipe, layers_kept=list(range(31))))
    assert any("keeps no layer" in p for p in bad(recipe, layers_kept=[], kv_groups_kept=[], mlp_neurons_kept=[]))
    groups = [list(g) for g in recipe.kv_groups_kept]
    groups[2] = [0, 1, 4]
    assert any("9 query heads in 3 KV groups" in p for p in bad(recipe, kv_groups_kept=groups))
    uneven = [list(n) for n in recipe.mlp_neurons_kept]
    uneven[0] = uneven[0][:64]
    assert any("deci architecture" in p for p in bad(recipe, mlp_neurons_kept=uneven))
    zero = recipe.to_json()["calibration"] | {"token_budget": 0}
    assert any("token_budget must be a whole number of at least 1" in p for p in bad(recipe, calibration=zero))
    no_decay = recipe.to_json()["calibration"] | {"warmup_fraction": 1.0}
    assert any("warmup_fraction is a fraction" in p for p in bad(recipe, calibration=no_decay))
    assert any("unknown quantization types ['Q9_X']" in p for p in bad(recipe, quant_types=["Q9_X"]))
    other = TeacherArch(layers=12, heads=9, kv_heads=3, hidden=576, intermediate=1536, vocab=49152, head_dim=64)
    assert any("written for a teacher of 30 layers" in p for p in validate(recipe, other))
    with pytest.raises(KeyError, match="layers_kept"):
        Recipe.from_json({"name": "x", "teacher": SMOLLM2.to_json()})


def test_estimates_give_sizes_and_say_when_k_quants_fall_back():
    recipe = propose(fake_report(), targets=(0.55,))[0]
    recipe.calibration = Calibration(token_budget=1024, seq_len=32, batch_size=2)
    result = estimate(recipe, fake_report())
    assert result["gguf_bytes"]["Q8_0"] < result["gguf_bytes"]["F16"] and result["loss_increase_estimate"] > 0
    assert any("k-quants need rows of a multiple of 256" in n for n in result["notes"])
