"""Students end to end on a tiny real llama: importance analysis → proposed recipes → review, edit, approve →
build (prune, heal, GGUF, quantize, evaluate) → a student in the project that deploys and chats.

Jobs run in this process (``execute``), as a worker would run them; the engine's own behaviour is tested in
tests/distillation/engine/.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from distillation.actions import builds as build_actions
from distillation.actions import importance as importance_actions
from distillation.actions import recipes as recipe_actions
from distillation.jobs.builds import build_dir
from distillation.models import ImportanceAnalysis, Recipe
from projects.actions import ActionError
from projects.background import execute
from projects.models import Job, LanguageModel

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = {"token_budget": 32 * 4 * 8, "seq_len": 32, "batch_size": 4, "learning_rate": 1e-3, "top_k": 16,
         "checkpoint_every": 4}  # fmt: skip


def run(job: Job) -> Job:
    execute(job.pk)
    job.refresh_from_db()
    return job


def analysed(teacher, domain, user) -> ImportanceAnalysis:
    analysis = importance_actions.do_start_importance(teacher, domain, user, token_budget=2048, seq_len=32,
                                                      sample_windows=4)  # fmt: skip
    job = run(analysis.job)
    assert job.status == "succeeded", job.error
    analysis.refresh_from_db()
    return analysis


def small(recipe: Recipe, user) -> Recipe:
    document = recipe.document | {"calibration": recipe.document["calibration"] | SMALL, "quant_types": ["Q8_0"]}
    return recipe_actions.do_edit_recipe(recipe, user, json.dumps(document))


def test_an_analysis_scores_the_teacher_and_proposes_three_recipes(actors, teacher, domain, client_as):
    analysis = analysed(teacher, domain, actors.member)
    assert analysis.status == "complete" and analysis.n_tokens == 2048 and analysis.arch["layers"] == 4
    summary = analysis.summary
    assert len(summary["layers"]["influence"]) == 4 and len(summary["heads"]["score"][0]) == 4
    assert len(summary["neurons"]["per_layer"]) == 4 and len(summary["weight_stats"]) == 4
    recipes = list(Recipe.objects.filter(analysis=analysis).order_by("-estimates__fraction"))
    assert [r.strategy for r in recipes] == ["proposal"] * 3 and all(r.status == "proposed" for r in recipes)
    fractions = [r.estimates["fraction"] for r in recipes]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] < 1
    page = (
        client_as(actors.viewer)
        .get(reverse("importance-detail", kwargs={"org_slug": actors.org.slug, "analysis_id": analysis.pk}))
        .content.decode()
    )
    assert 'data-chart="influence"' in page and 'data-chart="heads"' in page and "<rect" in page
    review = (
        client_as(actors.viewer)
        .get(reverse("recipe-detail", kwargs={"org_slug": actors.org.slug, "recipe_id": recipes[1].pk}))
        .content.decode()
    )
    assert "Layers kept" in review and "data-estimates" in review and "data-approve" not in review  # a viewer


def test_a_recipe_is_edited_approved_built_evaluated_and_its_student_chats(actors, teacher, domain, control, settings,
                                                                           tmp_path, client_as):  # fmt: skip
    analysis = analysed(teacher, domain, actors.member)
    recipe = Recipe.objects.filter(analysis=analysis).order_by("-estimates__fraction")[1]
    with pytest.raises(ActionError, match="approve it before building"):
        build_actions.do_build(recipe, actors.member)
    recipe = small(recipe, actors.member)
    assert recipe.version == 2 and recipe.strategy == "manual"
    recipe = recipe_actions.do_approve_recipe(recipe, actors.admin)
    assert recipe.status == "approved" and recipe.approved_by == actors.admin
    with pytest.raises(ActionError, match="only a proposed recipe is edited"):
        recipe_actions.do_edit_recipe(recipe, actors.member, json.dumps(recipe.document))

    build = build_actions.do_build(recipe, actors.member)
    recipe.refresh_from_db()
    assert recipe.status == "building"
    job = run(build.job)
    assert job.status == "succeeded", job.error
    build.refresh_from_db()
    recipe.refresh_from_db()
    assert build.status == "built" and recipe.status == "built"
    assert build.steps_done == build.steps_total == 8 and len(build.curves["loss"]) == 8
    assert set(build.timings) == {"targets", "pruning", "calibrating", "exporting", "quantizing", "evaluating"}
    student = build.student
    assert student.role == "student" and student.format == "gguf" and student.status == "ready"
    assert student.parameter_count < teacher.parameter_count
    (q8,) = build.quantized
    assert q8["requested"] == "Q8_0" and LanguageModel.objects.get(pk=q8["model"]).role == "student"
    report = build.report
    keys = [row["key"] for row in report["rows"]]
    assert keys == ["teacher-torch", "student-torch", "student-f16", "student-q8_0"]
    assert all(row["domain_ppl"] > 1 and row["control_ppl"] > 1 for row in report["rows"])
    assert report["specialisation_index"] > 0 and report["control"] == "python docs"
    assert len(report["answers"]) == 5 and all(a["student"] is not None for a in report["answers"])
    # The f16 and the quantized files have their healed weights: torch and llama.cpp agree on perplexity.
    torch_row, f16_row = report["rows"][1], report["rows"][2]
    assert f16_row["domain_ppl"] == pytest.approx(torch_row["domain_ppl"], rel=0.01)

    # The student deploys as an agent like any GGUF, and answers.
    from runtime import actions as runtime_actions
    from runtime import serving
    from runtime.engine.chat import ChatRequest, Delta, GenerationSettings

    settings.AGENT_STATE_DIR = tmp_path / "kv"
    serving.reset_model_cache()
    agent = runtime_actions.do_create_agent(actors.project, actors.owner, name="Student", model=student,
                                            context_length=128, max_tokens=8, temperature=0.0)  # fmt: skip
    runtime_actions.do_deploy_agent(agent)
    agent = runtime_actions.finish_deployment(actors.org.pk, agent.pk)
    assert agent.status == "live", agent.error
    request = ChatRequest([{"role": "user", "content": "what is the heart?"}], GenerationSettings(max_tokens=8))
    events = list(serving.backend_for(agent).stream(request, __import__("threading").Event()))
    assert any(isinstance(e, Delta) for e in events)
    # The baselines at the same size and budget join the report.
    baselines = run(build_actions.do_evaluate_baselines(build, actors.member))
    assert baselines.status == "succeeded", baselines.error
    build.refresh_from_db()
    names = [row["key"] for row in build.report["baselines"]]
    assert names == ["baseline-magnitude", "baseline-generic_wanda", "baseline-last_layers",
                     "baseline-lowest_influence"]  # fmt: skip
    student_params = build.report["rows"][1]["params"]
    for row in build.report["baselines"]:
        assert row["domain_ppl"] > 1 and row["control_ppl"] > 1
        assert abs(row["params"] - student_params) / student_params < 0.25  # the nearest size by whole layers
        # Measured like the student: its shipped GGUF through llama.cpp (the working files are gone after).
        assert row["quant_type"] == build.document["quant_types"][0] and row["bytes"] > 0
        assert row["domain_ppl_gguf"] > 1 and row["control_ppl_gguf"] > 1 and row["decode_tps"] > 0
    assert not (build_dir(build) / "baselines").exists()
    page = (
        client_as(actors.viewer)
        .get(reverse("build-detail", kwargs={"org_slug": actors.org.slug, "build_id": build.pk}))
        .content.decode()
    )
    assert "Prefill / decode tokens/s" in page and "baseline-magnitude" in page
    assert isinstance(build.report["beats_every_baseline"], bool)

    build_actions.sync_deployed(actors.org)  # the last lifecycle step: a live agent runs the student
    assert Recipe.objects.get(pk=recipe.pk).status == "deployed"
    runtime_actions.do_undeploy_agent(agent)
    build_actions.sync_deployed(actors.org)
    assert Recipe.objects.get(pk=recipe.pk).status == "built"
    serving.reset_model_cache()


def test_a_build_that_dies_midway_fails_shows_no_student_and_its_retry_resumes(actors, teacher, domain, monkeypatch):
    from projects.actions import do_retry_job
    from projects.background import JobContext

    analysis = analysed(teacher, domain, actors.member)
    recipe = Recipe.objects.filter(analysis=analysis).order_by("-estimates__fraction")[0]
    recipe = recipe_actions.do_approve_recipe(small(recipe, actors.member), actors.member)
    real_progress = JobContext.progress

    def dying(self, fraction, message=None, *, force=False):
        if message and message.startswith("Step 6 of 8"):
            raise RuntimeError("worker lost")  # after the checkpoint at step 4
        return real_progress(self, fraction, message, force=force)

    monkeypatch.setattr(JobContext, "progress", dying)
    build = build_actions.do_build(recipe, actors.member)
    job = run(build.job)
    build.refresh_from_db()
    recipe.refresh_from_db()
    assert job.status == "failed" and build.status == "failed" and "worker lost" in build.error
    assert build.student is None and recipe.status == "failed"
    assert not LanguageModel.objects.filter(role="student").exists()

    monkeypatch.setattr(JobContext, "progress", real_progress)
    retry = run(do_retry_job(job, actors.member))
    build.refresh_from_db()
    assert retry.status == "succeeded", retry.error
    assert build.status == "built" and build.student is not None and build.steps_done == 8
    assert [p[0] for p in build.curves["loss"]][:1] == [1]  # the curve of the first try is kept


def test_bad_input_gets_clear_errors(actors, teacher, domain, tmp_path):
    with pytest.raises(ActionError, match="token budget must be"):
        importance_actions.do_start_importance(teacher, domain, actors.member, token_budget=0)
    analysis = analysed(teacher, domain, actors.member)
    recipe = Recipe.objects.filter(analysis=analysis).first()
    with pytest.raises(ActionError, match="not valid JSON"):
        recipe_actions.do_edit_recipe(recipe, actors.member, "{")
    broken = recipe.document | {"layers_kept": [0, 1, 2, 3, 4, 5]}
    with pytest.raises(ActionError, match="keeps 6 layers; the teacher has 4"):
        recipe_actions.do_edit_recipe(recipe, actors.member, json.dumps(broken))
    recipe.refresh_from_db()
    assert recipe.version == 1  # nothing changed
    with pytest.raises(ActionError, match="needs a value for n_layers"):
        recipe_actions.do_recipe_by_strategy(analysis, actors.member, "layer_count")
    made = recipe_actions.do_recipe_by_strategy(analysis, actors.member, "layer_count", n_layers=3)
    assert len(made.document["layers_kept"]) == 3 and made.strategy == "layer_count"
    # A dataset too small for the healing budget: the build says so and shows no student.
    huge = recipe.document | {"calibration": recipe.document["calibration"] | {"token_budget": 10**7, "seq_len": 32}}
    recipe = recipe_actions.do_approve_recipe(recipe_actions.do_edit_recipe(recipe, actors.member, json.dumps(huge)),
                                              actors.member)  # fmt: skip
    build = build_actions.do_build(recipe, actors.member)
    job = run(build.job)
    build.refresh_from_db()
    recipe.refresh_from_db()
    assert job.status == "failed" and build.status == "failed" and recipe.status == "failed"
    assert "the recipe heals on 10,000,000" in build.error and "Lower the recipe's token budget" in build.error
    assert build.student is None and not LanguageModel.objects.filter(role="student").exists()
