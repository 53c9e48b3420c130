"""The analysis workflow in a real browser with a real worker: capture → train → a feature's page → test box.

A tiny llama (3 layers, width 32) is imported as a Hugging Face teacher; a worker runs every job.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from playwright.sync_api import expect

from analysis.models import Capture, CoderRun, Feature
from projects import blobs
from projects.actions import teachers as teacher_actions
from projects.models import Dataset
from tests.conftest import wait_for_job
from tests.e2e.conftest import log_in, screenshot
from tests.support.tiny_models import TinyLlamaConfig, write_hf_llama

pytestmark = pytest.mark.e2e

WORDS = "the heart pumps blood through arteries and veins while the lungs bring oxygen to it".split()
JOB_TIMEOUT = 90.0


def test_capture_train_and_read_a_feature_in_the_browser(actors, tmp_path, new_page, start_worker):
    folder = write_hf_llama(tmp_path / "tiny-hf", TinyLlamaConfig(n_layers=3, d_model=32, d_ff=64), seed=5)
    teacher = teacher_actions.do_import_model_files(folder, actors.project, actors.owner, name="tiny teacher")
    lines = [json.dumps({"id": i, "text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(30))}) for i in range(60)]
    documents = blobs.store_stream(io.BytesIO(("\n".join(lines) + "\n").encode()))
    Dataset.objects.create(
        organization=actors.org,
        project=actors.project,
        name="cardiology notes",
        format="jsonl",
        status="ready",
        source_blob=documents,
        documents_blob=documents,
        document_count=60,
    )
    worker = start_worker()
    page = new_page()
    log_in(page, "bob")

    page.goto(f"/o/{actors.org.slug}/analyses/")
    page.get_by_role("link", name="New capture").click()
    form = page.locator("form.stacked")
    form.get_by_label("MLPs").fill("model.layers.1.mlp")
    form.get_by_label("Tokens").fill("2048")
    form.get_by_label("Sequence length").fill("32")
    form.get_by_label("Batch size (sequences)").fill("4")
    form.get_by_role("button", name="Start the capture").click()
    expect(page).to_have_url(re.compile(r"/analyses/captures/\d+/$"))
    capture = Capture.objects.get(teacher=teacher)
    wait_for_job(capture.job, lambda j: j.is_finished, JOB_TIMEOUT, worker)
    expect(page.locator(".job-panel [data-field=status_label]")).to_have_text("Succeeded")
    page.reload()
    expect(page.locator("[data-captured]")).to_contain_text("2,048 tokens")

    train = page.locator("[data-train-form]")
    train.get_by_label("Expansion").fill("2")
    train.get_by_label("k (latents per token)").fill("4")
    train.get_by_label("Batch (tokens)").fill("128")
    train.get_by_role("button", name="Train").click()
    expect(page).to_have_url(re.compile(r"/analyses/runs/\d+/$"))
    run = CoderRun.objects.get(capture=capture)
    wait_for_job(run.job, lambda j: j.is_finished, JOB_TIMEOUT, worker)
    page.reload()
    expect(page.locator("[data-coder-metrics] tbody tr")).to_have_count(3)
    expect(page.locator("[data-curves] polyline")).to_have_count(3)
    screenshot(page, "analysis-run.png")

    page.locator("[data-coder-metrics] tr[data-kind=skip_transcoder]").get_by_role("link", name="Features").click()
    page.get_by_role("button", name="Describe the features").click()
    coder = run.coders.get(kind="skip_transcoder")
    wait_for_job(run.job.__class__.objects.get(kind="analysis.describe_features"), lambda j: j.is_finished,
                 JOB_TIMEOUT, worker)  # fmt: skip
    page.reload()
    first = page.locator("[data-features] tbody tr").first.get_by_role("link")
    index = int(first.inner_text())
    first.click()
    expect(page.locator("[data-contexts] .tok.center").first).to_be_visible()
    assert Feature.objects.get(coder=coder, index=index).contexts
    screenshot(page, "analysis-feature.png")

    page.goto(f"/o/{actors.org.slug}/analyses/coders/{coder.pk}/test/")
    page.locator("[data-test-box] textarea").fill("the heart pumps blood")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("[data-token-features]")).to_be_visible(timeout=JOB_TIMEOUT * 1000)
    expect(page.locator("[data-token-features] tbody tr")).not_to_have_count(0)
    screenshot(page, "analysis-test-box.png")
