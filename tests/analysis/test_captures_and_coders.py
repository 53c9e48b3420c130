"""The analysis app end to end on a tiny real llama: capture → shards as blobs → coders trained and measured.

Jobs run in this process (``execute``), as a worker would run them; the engine's own behaviour (shards equal to
a forward pass, resume, dictionary recovery, metrics against direct computation) is tested in
tests/analysis/engine/.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from django.urls import reverse

from analysis.actions import captures as capture_actions
from analysis.actions import coders as coder_actions
from analysis.jobs.coders import capture_folder
from analysis.models import Capture, CaptureShard, Coder, CoderRun
from projects import blobs
from projects.actions import ActionError
from projects.actions import conversion as conversion_actions
from projects.actions import teachers as teacher_actions
from projects.background import execute
from projects.models import Job
from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama

pytestmark = pytest.mark.django_db(transaction=True)


def run_job(job: Job) -> Job:
    execute(job.pk)
    job.refresh_from_db()
    return job


def complete_capture(teacher, dataset, user, **options) -> Capture:
    capture = capture_actions.do_start_capture(
        teacher, dataset, user, token_budget=2048, seq_len=32, batch_size=4, tokens_per_shard=512, **options
    )
    job = run_job(capture.job)
    assert job.status == "succeeded", job.error
    capture.refresh_from_db()
    return capture


def test_a_capture_stores_its_shards_as_blobs_and_only_then_is_complete(actors, teacher, dataset):
    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.0.mlp model.layers.2.mlp")
    assert capture.status == "complete" and capture.layers == [0, 2] and capture.d_model == 32
    assert capture.n_tokens == 2048 and capture.n_shards == 4 and capture.bytes > 2048 * 2 * 2 * 32 * 2
    names = set(CaptureShard.objects.filter(capture=capture).values_list("name", flat=True))
    assert {"manifest.json", "capture.json", "shard-00000.safetensors"} <= names, names
    assert not capture_actions.capture_dir(capture).exists()  # the work folder is gone once stored

    from analysis.engine.shards import CaptureReader

    reader = CaptureReader(capture_folder(capture))
    assert reader.n_tokens == 2048 and reader.layers == [0, 2]
    inputs, outputs = reader.read_activations(2, 0, 10)
    assert inputs.shape == (10, 32) and outputs.abs().sum() > 0


def test_coders_are_trained_side_by_side_measured_and_stored(actors, teacher, dataset, client_as):
    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.1.mlp")
    run = coder_actions.do_start_coder_run(capture, actors.member, expansion=2, k=4, batch_size=128)
    assert run.held_out_tokens == 204 and run.kinds == ["skip_transcoder", "transcoder", "sae"]
    job = run_job(run.job)
    assert job.status == "succeeded", job.error
    run.refresh_from_db()
    assert run.status == "complete" and run.tokens_trained > 0 and run.clean_ce > 0
    coders = list(Coder.objects.filter(run=run))
    assert sorted(c.kind for c in coders) == ["sae", "skip_transcoder", "transcoder"]
    for coder in coders:
        assert coder.d_sae == 64 and 0 < coder.l0 <= 4
        assert all(math.isfinite(v) for v in (coder.fvu, coder.kl, coder.ce_increase)) and coder.kl >= 0
    assert set(run.curves) == {"1:skip_transcoder", "1:transcoder", "1:sae"}

    from analysis.engine.transcoders import SparseCoder

    skip = next(c for c in coders if c.kind == "skip_transcoder")
    folder = blobs.materialize_folder(
        [("config.json", skip.config_blob), ("model.safetensors", skip.weights_blob)],
        blobs.local_path(skip.config_blob).parent.parent / "check",
    )
    assert SparseCoder.load(folder).d_sae == 64

    page = (
        client_as(actors.viewer)
        .get(reverse("coder-run-detail", kwargs={"org_slug": actors.org.slug, "run_id": run.pk}))
        .content.decode()
    )
    assert "data-coder-metrics" in page and "Sparse autoencoder" in page and "<polyline" in page


def test_the_capture_pages_show_the_estimate_and_start_a_capture(actors, teacher, dataset, client_as):
    client = client_as(actors.member)
    base = reverse("capture-create", kwargs={"org_slug": actors.org.slug})
    page = client.get(f"{base}?teacher={teacher.pk}&hookpoints=model.layers.*.mlp&token_budget=1000").content.decode()
    # 1000 tokens × (3 layers × (in + out) × 32 values × 2 bytes + 24 bytes of ids and positions)
    assert "408.0 kB" in page and "data-plan" in page
    page = client.get(f"{base}?teacher={teacher.pk}&hookpoints=model.layer.*&token_budget=1000").content.decode()
    assert "matches no MLP" in page
    response = client.post(base, {"teacher": teacher.pk, "dataset": dataset.pk, "hookpoints": "model.layers.*.mlp",
                                  "token_budget": "1,000", "seq_len": "32", "batch_size": "4"})  # fmt: skip
    capture = Capture.objects.for_org(actors.org).get()
    assert response.status_code == 302 and response["Location"].endswith(f"/captures/{capture.pk}/")
    assert capture.token_budget == 1000 and capture.layers == [0, 1, 2] and capture.job.kind == "analysis.capture"
    detail = client.get(response["Location"]).content.decode()
    assert "data-job-id" in detail and "estimated 408.0 kB" in detail


def test_bad_captures_are_refused_with_a_reason_before_anything_is_kept(actors, teacher, dataset, tmp_path):
    with pytest.raises(ActionError, match="matches no MLP.*model.layers.2.mlp"):
        capture_actions.do_start_capture(teacher, dataset, actors.member, hookpoints="model.layers.7.mlp")
    with pytest.raises(ActionError, match="needs about .* of disk"):
        capture_actions.do_start_capture(teacher, dataset, actors.member, token_budget=2**31 - 1)
    with pytest.raises(ActionError, match="token budget must be"):
        capture_actions.do_start_capture(teacher, dataset, actors.member, token_budget=0)
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", TinyLlamaConfig(), tensor_type="F32")
    gguf_teacher = teacher_actions.do_import_model_files(gguf, actors.project, actors.owner, name="gguf teacher")
    # A GGUF teacher: the Hugging Face copy torch needs is started for the person, once; nothing else is kept.
    with pytest.raises(ActionError, match="which is being made now"):
        capture_actions.do_start_capture(gguf_teacher, dataset, actors.member)
    with pytest.raises(ActionError, match="still being made"):
        capture_actions.do_start_capture(gguf_teacher, dataset, actors.member)
    assert Job.objects.filter(kind=conversion_actions.TO_HF_JOB).count() == 1
    assert not Capture.objects.exists() and not Job.objects.filter(kind="analysis.capture").exists()


def test_coders_need_a_complete_capture_and_sensible_settings(actors, teacher, dataset):
    capture = Capture.objects.create(
        organization=actors.org, project=actors.project, teacher=teacher, dataset=dataset, token_budget=100,
        layers=[0], d_model=32, status="capturing",
    )  # fmt: skip
    with pytest.raises(ActionError, match="not complete"):
        coder_actions.do_start_coder_run(capture, actors.member)
    Capture.objects.filter(pk=capture.pk).update(status="complete", n_tokens=100)
    capture.refresh_from_db()
    with pytest.raises(ActionError, match="no layer \\[5\\]"):
        coder_actions.do_start_coder_run(capture, actors.member, layers=[5])
    with pytest.raises(ActionError, match="leave at least one batch"):
        coder_actions.do_start_coder_run(capture, actors.member, batch_size=1024)
    with pytest.raises(ActionError, match="Coder kinds are"):
        coder_actions.do_start_coder_run(capture, actors.member, kinds=["pca"], batch_size=8)
    with pytest.raises(ActionError, match="optimiser is one of signum, adam"):
        coder_actions.do_start_coder_run(capture, actors.member, optimizer="sgd", batch_size=8)
    with pytest.raises(ActionError, match="learning rate must be between 0 and 1"):
        coder_actions.do_start_coder_run(capture, actors.member, lr=2.0, batch_size=8)
    assert not CoderRun.objects.exists()


def test_coders_train_from_the_forward_pass_and_hold_out_the_whole_capture(actors, teacher, dataset, client_as):
    capture = capture_actions.do_start_capture(
        teacher, dataset, actors.member, token_budget=512, seq_len=32, batch_size=4, tokens_per_shard=256,
        hookpoints="model.layers.1.mlp",
    )  # fmt: skip
    assert run_job(capture.job).status == "succeeded"
    capture.refresh_from_db()
    with pytest.raises(ActionError, match="needs a token budget"):
        coder_actions.do_start_coder_run(capture, actors.member, source="forward", batch_size=128)
    with pytest.raises(ActionError, match="holds out the whole capture"):
        coder_actions.do_start_coder_run(
            capture, actors.member, source="forward", batch_size=128, token_budget=1024, held_out_tokens=100
        )
    with pytest.raises(ActionError, match="reads from one of shards, forward"):
        coder_actions.do_start_coder_run(capture, actors.member, source="disk", batch_size=128)
    run = coder_actions.do_start_coder_run(
        capture, actors.member, source="forward", kinds=["skip_transcoder"], expansion=2, k=4, batch_size=128,
        token_budget=1024,
    )  # fmt: skip
    assert run.held_out_tokens == 512
    job = run_job(run.job)
    assert job.status == "succeeded", job.error
    run.refresh_from_db()
    assert run.status == "complete" and run.tokens_trained == 1024 and run.clean_ce > 0
    coder = Coder.objects.get(run=run)
    assert coder.kind == "skip_transcoder" and 0 < coder.l0 <= 4 and math.isfinite(coder.fvu) and coder.kl >= 0
    page = client_as(actors.member).get(
        reverse("coder-run-detail", kwargs={"org_slug": actors.org.slug, "run_id": run.pk})
    )
    assert "forward pass" in page.content.decode()

    # A capture of the whole split leaves nothing to stream after it: refused with a reason, no coder kept.
    whole = capture_actions.do_start_capture(
        teacher, dataset, actors.member, token_budget=1_000_000, seq_len=32, batch_size=4, tokens_per_shard=4096,
        hookpoints="model.layers.1.mlp",
    )  # fmt: skip
    assert run_job(whole.job).status == "succeeded"
    whole.refresh_from_db()
    assert whole.n_tokens < 1_000_000
    empty = coder_actions.do_start_coder_run(
        whole, actors.member, source="forward", kinds=["skip_transcoder"], expansion=2, k=4, batch_size=128,
        token_budget=1024,
    )  # fmt: skip
    job = run_job(empty.job)
    empty.refresh_from_db()
    assert job.status == "failed" and "holds no tokens after the capture" in job.error, job.error
    assert empty.status == "failed" and not Coder.objects.filter(run=empty).exists()


def test_the_train_form_takes_the_optimiser_and_learning_rate(actors, teacher, dataset, client_as):
    capture = Capture.objects.create(
        organization=actors.org, project=actors.project, teacher=teacher, dataset=dataset, token_budget=100,
        layers=[0], d_model=32, status="complete", n_tokens=100,
    )  # fmt: skip
    client = client_as(actors.member)
    url = reverse("coder-run-create", kwargs={"org_slug": actors.org.slug, "capture_id": capture.pk})
    page = client.get(reverse("capture-detail", kwargs={"org_slug": actors.org.slug, "capture_id": capture.pk}))
    assert 'name="optimizer"' in page.content.decode() and 'name="lr"' in page.content.decode()
    refused = client.post(url, {"lr": "fast", "batch_size": "8"}, follow=True)
    assert "“fast” is not a number." in refused.content.decode() and not CoderRun.objects.exists()
    client.post(url, {"optimizer": "adam", "lr": "2e-3", "batch_size": "8"})
    run = CoderRun.objects.get()
    assert run.optimizer == "adam" and run.lr == pytest.approx(2e-3)


def test_a_capture_that_dies_midway_is_failed_and_its_retry_resumes_from_the_last_shard(
    actors, teacher, dataset, monkeypatch
):
    from projects.actions import do_retry_job
    from projects.background import JobContext

    real_progress = JobContext.progress

    def dying(self, fraction, message=None, *, force=False):
        if message and " of 2,048 tokens" in message and int(message.split(" of")[0].replace(",", "")) >= 1024:
            raise RuntimeError("worker lost")  # as if the machine went away two shards in
        return real_progress(self, fraction, message, force=force)

    monkeypatch.setattr(JobContext, "progress", dying)
    capture = capture_actions.do_start_capture(
        teacher, dataset, actors.member, token_budget=2048, seq_len=32, batch_size=4, tokens_per_shard=512
    )
    job = run_job(capture.job)
    capture.refresh_from_db()
    assert job.status == "failed" and capture.status == "failed" and "worker lost" in capture.error
    assert not CaptureShard.objects.filter(capture=capture).exists()  # nothing shown as stored
    on_disk = sorted(p.name for p in capture_actions.capture_dir(capture).glob("shard-*.safetensors"))
    assert on_disk[:2] == ["shard-00000.safetensors", "shard-00001.safetensors"]

    monkeypatch.setattr(JobContext, "progress", real_progress)
    retry = run_job(do_retry_job(job, actors.member))
    capture.refresh_from_db()
    assert retry.status == "succeeded" and f"resumed from {512 * len(on_disk):,} tokens" in retry.log
    assert capture.status == "complete" and capture.n_tokens == 2048 and capture.job_id == retry.pk


def test_features_are_described_browsed_and_tested_through_a_worker(actors, teacher, dataset, client_as):
    from analysis.actions import features as feature_actions
    from analysis.models import Feature, FeatureNeuronLink

    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.1.mlp")
    run = coder_actions.do_start_coder_run(capture, actors.member, kinds=["skip_transcoder"], expansion=2, k=4,
                                           batch_size=128)  # fmt: skip
    assert run_job(run.job).status == "succeeded"
    coder = Coder.objects.get(run=run)
    client = client_as(actors.member)
    listing = reverse("feature-list", kwargs={"org_slug": actors.org.slug, "coder_id": coder.pk})
    assert "not described yet" in client.get(listing).content.decode()

    client.post(reverse("feature-describe", kwargs={"org_slug": actors.org.slug, "coder_id": coder.pk}))
    job = Job.objects.get(kind=feature_actions.DESCRIBE_JOB)
    assert run_job(job).status == "succeeded", job.error
    features = Feature.objects.filter(coder=coder)
    assert features.count() == 64
    alive = features.filter(frequency__gt=0)
    assert alive.exists() and all(f.contexts and f.label for f in alive), [
        (f.index, f.label, len(f.contexts)) for f in alive if not (f.contexts and f.label)
    ][:5]
    top = alive.order_by("-frequency").first()
    assert len(top.logit_lens["promoted"]) == 8 and top.histogram["counts"]
    assert FeatureNeuronLink.objects.filter(feature=top).count() == 8

    page = client.get(listing + "?sort=max").content.decode()
    assert f"/features/{top.index}/" in page
    detail = client.get(reverse("feature-detail", kwargs={"org_slug": actors.org.slug, "coder_id": coder.pk,
                                                          "index": top.index})).content.decode()  # fmt: skip
    assert 'class="tok center"' in detail and "data-logit-lens" in detail and "data-neurons" in detail

    box = reverse("feature-test", kwargs={"org_slug": actors.org.slug, "coder_id": coder.pk})
    response = client.post(box, {"text": "the heart pumps blood"})
    test_job = Job.objects.get(kind=feature_actions.TEST_BOX_JOB)
    assert response["Location"] == f"{box}?job={test_job.pk}"
    assert "data-waiting" in client.get(response["Location"]).content.decode()  # no worker has run it yet
    assert run_job(test_job).status == "succeeded"
    result = client.get(response["Location"] + "&fragment=result").content.decode()
    assert "data-token-features" in result and result.count("<tr>") == len(test_job.result["tokens"]) + 1
    assert client.post(box, {"text": "  "}).status_code == 302 and Job.objects.filter(kind=test_job.kind).count() == 1


def test_the_dashboard_counts_the_organisations_captures_and_training_runs(actors, teacher, dataset, client):
    def cards() -> str:
        client.force_login(actors.member)
        page = client.get(reverse("dashboard", kwargs={"org_slug": actors.org.slug})).content.decode()
        return page[page.index('<div class="cards">') : page.index("</div>", page.index('<div class="cards">'))]

    assert "<strong>0</strong> activation captures" in cards()
    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.1.mlp")
    # The cached dashboard is rebuilt when a capture is written (tenant_cache tracks the model).
    assert "<strong>1</strong> activation capture<" in cards()
    coder_actions.do_start_coder_run(capture, actors.member, kinds=["skip_transcoder"])
    assert "<strong>1</strong> transcoder training run<" in cards()
    assert "Analyses of your teachers: not built yet" not in cards()
    # Another organisation's rows are not counted.
    Capture.objects.filter(pk=capture.pk).update(organization=actors.other_org)
    assert "<strong>0</strong> activation captures" in cards()


def test_a_runs_transcoders_export_for_circuit_tracer_and_saelens_and_download(actors, teacher, dataset, client_as):
    import zipfile

    import yaml
    from safetensors.numpy import load

    from analysis.actions import exports as export_actions

    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.*.mlp")
    run = coder_actions.do_start_coder_run(
        capture, actors.member, kinds=["skip_transcoder", "sae"], expansion=2, k=4, batch_size=128
    )
    assert run_job(run.job).status == "succeeded"
    run.refresh_from_db()
    with pytest.raises(ActionError, match="an SAE cannot stand in"):
        export_actions.do_export_coders(run, actors.member, format="circuit_tracer", kind="sae")

    export = export_actions.do_export_coders(run, actors.member, format="circuit_tracer", kind="skip_transcoder")
    assert run_job(export.job).status == "succeeded"
    export.refresh_from_db()
    assert export.status == "complete" and export.blob.size > 0
    response = client_as(actors.viewer).get(
        reverse("coder-export-download", kwargs={"org_slug": actors.org.slug, "export_id": export.pk})
    )
    assert response.status_code == 200 and export.filename in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    folder = export.filename.removesuffix(".zip")
    names = set(archive.namelist())
    assert names == {f"{folder}/config.yaml"} | {f"{folder}/layer_{i}.safetensors" for i in range(3)}
    config = yaml.safe_load(archive.read(f"{folder}/config.yaml"))
    assert config["model_kind"] == "transcoder_set" and config["k"] == 4
    layer = load(archive.read(f"{folder}/layer_2.safetensors"))
    # circuit-tracer's SingleLayerTranscoder: W_enc and W_dec both (d_transcoder, d_model), W_skip (d_model, d_model)
    assert layer["W_enc"].shape == layer["W_dec"].shape == (64, 32) and layer["W_skip"].shape == (32, 32)

    saelens = export_actions.do_export_coders(run, actors.member, format="saelens", kind="sae")
    assert run_job(saelens.job).status == "succeeded"
    saelens.refresh_from_db()
    with zipfile.ZipFile(blobs.local_path(saelens.blob)) as archive:
        folder = saelens.filename.removesuffix(".zip")
        cfg = json.loads(archive.read(f"{folder}/layer_1/cfg.json"))
        assert cfg["architecture"] == "topk" and f"{folder}/layer_1/sae_weights.safetensors" in archive.namelist()

    page = (
        client_as(actors.member)
        .get(reverse("coder-run-detail", kwargs={"org_slug": actors.org.slug, "run_id": run.pk}))
        .content.decode()
    )
    assert page.count("Download hartonomous-run") == 2 and 'data-compare-layer="2"' in page


def test_exports_refuse_a_partial_set_and_nothing_unfinished_downloads(actors, teacher, dataset, client_as):
    from analysis.actions import exports as export_actions
    from analysis.models import CoderExport

    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.1.mlp")
    run = coder_actions.do_start_coder_run(capture, actors.member, kinds=["skip_transcoder"], expansion=2, k=4,
                                           batch_size=128)  # fmt: skip
    assert run_job(run.job).status == "succeeded"
    run.refresh_from_db()
    with pytest.raises(ActionError, match=r"every layer 0…2 of the teacher; this run has layers \[1\]"):
        export_actions.do_export_coders(run, actors.member, format="circuit_tracer")
    assert not CoderExport.objects.exists()
    export = export_actions.do_export_coders(run, actors.member, format="saelens")
    response = client_as(actors.member).get(
        reverse("coder-export-download", kwargs={"org_slug": actors.org.slug, "export_id": export.pk})
    )
    assert response.status_code == 302  # queued: not downloadable, back to the run with a message


def test_releasing_a_captures_shards_frees_the_disk_and_keeps_what_was_learnt(actors, teacher, dataset, client_as):
    from analysis.actions import features as feature_actions
    from projects.models import Blob

    capture = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.1.mlp")
    run = coder_actions.do_start_coder_run(capture, actors.member, kinds=["skip_transcoder"], expansion=2, k=4,
                                           batch_size=128)  # fmt: skip
    # While its training job waits, nothing is released.
    with pytest.raises(ActionError, match="still reading"):
        capture_actions.do_release_shards(capture, actors.member)
    assert run_job(run.job).status == "succeeded"
    coder = Coder.objects.get(run=run)
    describe = feature_actions.do_describe_features(coder, actors.member)
    with pytest.raises(ActionError, match="still reading"):
        capture_actions.do_release_shards(capture, actors.member)
    assert run_job(describe).status == "succeeded"
    shards = CaptureShard.objects.filter(capture=capture, name__startswith="shard-")
    shard_blobs = list(shards.values_list("blob", flat=True))
    folder = capture_folder(capture)
    paths = [blobs.local_path(Blob.objects.get(pk=sha)) for sha in shard_blobs]
    assert shard_blobs and all(p.exists() for p in paths)

    client = client_as(actors.member)
    page = reverse("capture-detail", kwargs={"org_slug": actors.org.slug, "capture_id": capture.pk})
    assert "data-release-form" in client.get(page).content.decode()
    answer = client.post(reverse("capture-release", kwargs={"org_slug": actors.org.slug, "capture_id": capture.pk}),
                         follow=True).content.decode()  # fmt: skip
    capture.refresh_from_db()
    assert capture.shards_released_at is not None and "freed" in answer and "data-shards-released" in answer
    assert "data-train-form" not in answer and "data-release-form" not in answer
    assert not any(p.exists() for p in paths) and not folder.exists()
    assert not Blob.objects.filter(pk__in=shard_blobs).exists()
    # The record stays: manifest, coders, features; the rest asks for a new capture.
    assert CaptureShard.objects.filter(capture=capture, name="manifest.json").exists()
    assert Coder.objects.filter(run=run).exists() and coder.features.exists()
    with pytest.raises(ActionError, match="were released on .* Capture again"):
        coder_actions.do_start_coder_run(capture, actors.member)
    with pytest.raises(ActionError, match="were released on"):
        feature_actions.do_describe_features(Coder.objects.get(pk=coder.pk), actors.member)
    with pytest.raises(ActionError, match="already released"):
        capture_actions.do_release_shards(capture, actors.member)
    # A viewer cannot release; another organisation's capture is a 404 (the route walker covers the route too).
    viewer = client_as(actors.viewer).post(
        reverse("capture-release", kwargs={"org_slug": actors.org.slug, "capture_id": capture.pk})
    )
    assert viewer.status_code == 403


def test_the_api_releases_shards_and_refuses_an_incomplete_capture(actors, teacher, dataset, api_as):
    capture = Capture.objects.create(
        organization=actors.org, project=actors.project, teacher=teacher, dataset=dataset, token_budget=100,
        layers=[0], d_model=32, status="capturing",
    )  # fmt: skip
    api = api_as(actors.member)
    url = f"/api/v1/orgs/{actors.org.slug}/captures/{capture.pk}/release-shards/"
    refused = api.post(url)
    assert refused.status_code == 409 and "not complete" in json.dumps(refused.json())
    done = complete_capture(teacher, dataset, actors.member, hookpoints="model.layers.1.mlp")
    released = api.post(f"/api/v1/orgs/{actors.org.slug}/captures/{done.pk}/release-shards/")
    assert released.status_code == 200, released.json()
    assert released.json()["freed_bytes"] > 0 and released.json()["shards_released_at"]
