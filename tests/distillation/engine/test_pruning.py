"""Structured pruning: what scores zero can go without changing the logits; GQA and renumbering stay valid."""

from __future__ import annotations

import pytest
import torch

from distillation.engine.importance import compute_importance
from distillation.engine.pruning import PruningError, prune
from distillation.engine.recipes import build

from .conftest import tiny_llama


def _zero_out(model: torch.nn.Module) -> None:
    """Make KV group 1 of layer 0 silent, 40 MLP neurons of every layer dead, and layer 2 an identity."""
    d = model.config.hidden_size // model.config.num_attention_heads
    group = model.config.num_attention_heads // model.config.num_key_value_heads
    with torch.no_grad():
        layers = model.model.layers
        layers[0].self_attn.o_proj.weight[:, group * d : 2 * group * d] = 0
        for layer in layers:
            layer.mlp.down_proj.weight[:, 88:] = 0
        layers[2].self_attn.o_proj.weight.zero_()
        layers[2].mlp.down_proj.weight.zero_()


def test_pruning_what_contributes_nothing_leaves_the_logits_unchanged(model, token_windows):
    _zero_out(model)
    report = compute_importance(model, iter(token_windows), sample_windows=4)
    assert report.skip_loss[2] == pytest.approx(0.0, abs=1e-5) and report.kv_loss[0][1] == pytest.approx(0, abs=1e-5)
    recipe = build(report, name="zeros out", layers_kept=[0, 1, 3], reasons={2: "identity"}, kv_groups=2, width=88)
    # Layer 0 keeps both groups here (the group count is uniform); prune group 1 where it is silent by hand.
    recipe.kv_groups_kept = [[0, 1], [0, 1], [0, 1]]
    assert all(n == list(range(88)) for n in recipe.mlp_neurons_kept)  # the dead neurons scored lowest
    student = prune(model, recipe)
    ids = torch.tensor(token_windows[:3])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, student(input_ids=ids).logits, atol=1e-5)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in model.parameters())


def test_dropping_a_silent_kv_group_keeps_the_logits_and_gqa_shapes():
    model = tiny_llama(1, layers=2, heads=6, kv_heads=3, hidden=48)
    d, group = 8, 2
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[:, 1 * group * d : 2 * group * d] = 0  # group 1 silent everywhere
    report = compute_importance(model, iter([[i % 90 for i in range(j, j + 24)] for j in range(8)]), sample_windows=2)
    assert all(row[1] < min(row[0], row[2]) for row in report.kv_group_norm())  # silent group scores lowest
    recipe = build(report, name="two groups", layers_kept=[0, 1], reasons={}, kv_groups=2, width=128)
    recipe.kv_groups_kept = [[0, 2], [0, 2]]
    student = prune(model, recipe)
    attention = student.model.layers[0].self_attn
    assert (student.config.num_attention_heads, student.config.num_key_value_heads, student.config.head_dim) == (
        4,
        2,
        8,
    )
    assert attention.q_proj.weight.shape == (32, 48) and attention.k_proj.weight.shape == (16, 48)
    assert attention.o_proj.weight.shape == (48, 32)
    ids = torch.tensor([[5, 9, 13, 2, 7, 1, 30, 31]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, student(input_ids=ids).logits, atol=1e-5)


def test_layer_drop_renumbers_layers_weights_and_config(model, token_windows):
    report = compute_importance(model, iter(token_windows), sample_windows=2)
    recipe = build(report, name="drop two", layers_kept=[0, 3], reasons={1: "test", 2: "test"}, kv_groups=2, width=128)
    student = prune(model, recipe)
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    keys = {k.split(".")[2] for k in student.state_dict() if k.startswith("model.layers.")}
    assert keys == {"0", "1"}
    torch.testing.assert_close(student.model.layers[1].mlp.up_proj.weight, model.model.layers[3].mlp.up_proj.weight)
    student(input_ids=torch.tensor([token_windows[0]]))  # it runs


def test_a_recipe_that_does_not_fit_the_model_is_refused(model, token_windows):
    report = compute_importance(model, iter(token_windows), sample_windows=2)
    recipe = build(report, name="bad", layers_kept=[0, 1, 2, 3], reasons={}, kv_groups=2, width=128)
    recipe.mlp_neurons_kept[1] = recipe.mlp_neurons_kept[1][:64]
    with pytest.raises(PruningError, match="same MLP width"):
        prune(model, recipe)
