"""Students in a real browser with a real worker: an importance analysis on a tiny llama, a proposal reviewed and
approved, the build's loss curve, the report, then the student deployed as an agent and chatted with."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from distillation.models import Build, ImportanceAnalysis, Recipe
from tests.conftest import wait_for_job
from tests.distillation.conftest import DOMAIN, make_dataset
from tests.e2e.conftest import log_in, screenshot

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 240.0


@pytest.fixture
def tiny_teacher(actors, tmp_path):
    from projects.actions import teachers as teacher_actions
    from tests.support.tiny_models import TinyLlamaConfig, write_hf_llama

    config = TinyLlamaConfig(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2, d_ff=256, context_length=256)
    folder = write_hf_llama(tmp_path / "tiny-hf", config, seed=3)
    return teacher_actions.do_import_model_files(folder, actors.project, actors.owner, name="tiny teacher")


def test_analyse_approve_build_report_deploy_and_chat(actors, tiny_teacher, new_page, start_worker):
    make_dataset(actors, "cardiology notes", DOMAIN, "domain")
    worker = start_worker()
    page = new_page()
    log_in(page, "bob")

    page.goto(f"/o/{actors.org.slug}/students/")
    page.get_by_role("link", name="New importance analysis").click()
    form = page.locator("form.stacked")
    form.get_by_label("Tokens").fill("2048")
    form.get_by_label("Sequence length").fill("32")
    form.get_by_label("Windows for the skip / mask losses").fill("2")
    form.get_by_role("button", name="Start the analysis").click()
    expect(page).to_have_url(re.compile(r"/students/importance/\d+/$"))
    analysis = ImportanceAnalysis.objects.get(teacher=tiny_teacher)
    wait_for_job(analysis.job, lambda j: j.is_finished, JOB_TIMEOUT, worker)
    page.reload()
    expect(page.locator('[data-chart="influence"] rect')).to_have_count(4)
    expect(page.locator('[data-chart="heads"] rect')).to_have_count(16)
    expect(page.locator("[data-recipes] tbody tr:not(.empty-row)")).to_have_count(3)
    screenshot(page, "students-importance.png")

    page.get_by_role("link", name="55 % student").click()
    expect(page.locator("[data-kept] tbody tr")).not_to_have_count(0)
    expect(page.locator("[data-estimates]")).to_contain_text("parameters")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("[data-recipe-status]")).to_have_text("Approved")
    screenshot(page, "students-recipe.png")
    page.get_by_role("button", name="Build this student").click()
    expect(page).to_have_url(re.compile(r"/students/builds/\d+/$"))
    build = Build.objects.get(recipe__name="55 % student")
    # The loss curve draws itself while the build runs (htmx polls the curve).
    expect(page.locator("[data-build-curve] polyline")).to_be_visible(timeout=JOB_TIMEOUT * 1000)
    wait_for_job(build.job, lambda j: j.is_finished, JOB_TIMEOUT, worker)
    page.reload()
    expect(page.locator("[data-build-status]")).to_contain_text("Built")
    expect(page.locator("[data-evaluation] tbody tr")).to_have_count(6)  # teacher, student torch, F16, 3 quants
    expect(page.locator("[data-answers] tbody tr")).to_have_count(5)
    screenshot(page, "students-report.png")
    build.refresh_from_db()
    assert Recipe.objects.get(pk=build.recipe_id).status == "built"

    # The student is a model of the project: deploy it as an agent and chat.
    page.goto(f"/o/{actors.org.slug}/agents/new/")
    page.get_by_label("Name").fill("Student helper")
    page.get_by_label("Model", exact=True).select_option(str(build.student_id))
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Context length").fill("256")
    page.get_by_role("button", name="Create agent").click()
    status = page.locator("#agent-status")
    status.get_by_role("button", name="Deploy").click()
    expect(status.locator("[data-field=status]")).to_have_text("Live", timeout=30_000)
    page.get_by_role("button", name="New conversation").first.click()
    expect(page.locator("[data-chat]")).to_have_attribute("data-connection", "open")
    box = page.get_by_label("Message", exact=True)
    box.fill("What does the heart do?")
    box.press("Enter")
    answer = page.locator("li[data-role=assistant]").last
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    screenshot(page, "students-chat.png")
