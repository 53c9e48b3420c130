"""Importance scores: a part made to matter scores above one made silent; memory does not grow with tokens."""

from __future__ import annotations

import json

import pytest
import torch

from distillation.engine.families import TeacherArch, UnsupportedArchitecture
from distillation.engine.importance import ImportanceReport, compute_importance, magnitude_report

from .conftest import tiny_llama


def test_a_neuron_made_loud_outscores_a_dead_one_and_an_identity_layer_costs_nothing(model, token_windows):
    with torch.no_grad():
        mlp = model.model.layers[1].mlp
        mlp.down_proj.weight[:, 5] = 0  # neuron 5 feeds nothing
        mlp.up_proj.weight[7] *= 20  # neuron 7 fires hard
        model.model.layers[3].self_attn.o_proj.weight.zero_()
        model.model.layers[3].mlp.down_proj.weight.zero_()
    report = compute_importance(model, iter(token_windows), batch_size=4, sample_windows=4)
    scores = report.neuron_score[1]
    assert scores[5] == 0.0 and scores[7] == max(scores)
    assert report.block_influence[3] == pytest.approx(0.0, abs=1e-6)
    assert report.skip_loss[3] == pytest.approx(0.0, abs=1e-5)
    assert all(v == pytest.approx(0.0, abs=1e-5) for v in report.kv_loss[3])
    assert report.n_tokens == 32 * len(token_windows) and report.sample_tokens == 4 * 32
    assert len(report.head_norm[0]) == 4 and len(report.kv_loss[0]) == 2


def test_the_report_round_trips_through_json_and_summarises_for_charts(model, token_windows):
    report = compute_importance(model, iter(token_windows[:8]), sample_windows=2)
    again = ImportanceReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again.neuron_score == report.neuron_score and again.arch == report.arch
    summary = report.summary()
    assert len(summary["layers"]["influence"]) == 4 and len(summary["neurons"]["per_layer"]) == 4
    row = summary["neurons"]["per_layer"][0]
    assert row["p5"] <= row["p25"] <= row["median"] <= row["p75"] <= row["p95"] <= row["max"]


def test_progress_is_reported_and_an_empty_stream_is_refused(model, token_windows):
    seen = []
    compute_importance(model, iter(token_windows[:8]), n_windows=8, batch_size=4, sample_windows=2,
                       progress=lambda done, total, **info: seen.append((done, total, info.get("phase"))))  # fmt: skip
    assert (4, 8, "scores") in seen and (8, 8, "scores") in seen and seen[-1][2] == "losses"
    with pytest.raises(ValueError, match="no tokens"):
        compute_importance(model, iter([]))


def test_magnitude_scores_need_no_data_and_other_families_are_refused():
    model = tiny_llama(2)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[:, 3] = 0
    report = magnitude_report(model)
    assert report.neuron_score[0][3] == 0.0 and report.n_tokens == 0

    class Other:
        model_type, architectures = "gpt2", ["GPT2LMHeadModel"]

    with pytest.raises(UnsupportedArchitecture, match="not supported yet: GPT2LMHeadModel; supported: llama"):
        TeacherArch.from_config(Other())
