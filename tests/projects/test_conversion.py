"""Converted copies: request (page, API) → conversion job → blobs → derived model → its inventory; done once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from projects import blobs
from projects.actions import ActionError, do_enqueue_job
from projects.actions.conversion import TO_GGUF_JOB, TO_HF_JOB, do_request_conversion
from projects.actions.teachers import do_import_model_files
from projects.background import execute, reap_stale_jobs
from projects.jobs.conversion import conversion_workdir
from projects.models import Blob, Job, LanguageModel, ModelStatus
from tests.conftest import TOOLS_DIR
from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama, write_hf_llama

CONFIG = TinyLlamaConfig(n_layers=2)
N_TENSORS = 2 * 9 + 3


def imported(path: Path, actors, name: str) -> LanguageModel:
    """A teacher imported from this machine, inventoried, ready."""
    return do_import_model_files(path, actors.project, actors.owner, name=name)


def run(job_id: int) -> Job:
    execute(job_id)  # what the worker runs, in this process
    return Job.objects.get(pk=job_id)


def run_inventory(model: LanguageModel) -> Job:
    return run(Job.objects.get(kind="projects.inventory_model", params__model=model.pk, status="queued").pk)


def convert_url(org, model) -> str:
    return f"/api/v1/orgs/{org.slug}/models/{model.pk}/convert/"


def test_gguf_teacher_gets_a_torch_copy_once(actors, api_as, client, tmp_path, transactional_db):
    source = imported(write_gguf_llama(tmp_path / "tiny.gguf", CONFIG, tensor_type="Q8_0"), actors, "tiny")
    assert source.status == ModelStatus.READY
    api = api_as(actors.member)

    first = api.post(convert_url(actors.org, source), {"format": "safetensors"}, format="json")
    assert first.status_code == 202, first.content
    job_id = first.json()["job"]["id"]
    assert first.json()["model"] is None and first.json()["job"]["kind"] == TO_HF_JOB
    again = do_request_conversion(source, actors.member, "hf")  # "hf" names the same target
    assert again.job.pk == job_id and again.derivative is None  # the conversion under way

    job = run(job_id)
    assert job.status == "succeeded", job.error + job.log
    assert job.result["reused"] is False and job.progress == 1.0
    copy = LanguageModel.objects.get(pk=job.result["model"])
    assert copy.derived_from_id == source.pk and copy.format == "safetensors" and copy.role == source.role
    assert copy.status == ModelStatus.IMPORTING and copy.name == "tiny · Hugging Face"
    assert copy.capabilities["analysis"] is True and copy.file_type == "float32"
    paths = {f.path for f in copy.files.all()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= paths
    for file in copy.files.select_related("blob"):  # content-addressed blobs, in storage
        assert default_storage.exists(Blob.name_for(file.blob_id)) and file.blob.size > 0
    assert not conversion_workdir(job.pk).exists()
    assert job.artifacts == [{"label": copy.name, "url": f"/o/{actors.org.slug}/models/{copy.pk}/"}]

    assert run_inventory(copy).status == "succeeded"
    copy.refresh_from_db()
    assert copy.status == ModelStatus.READY and copy.tensors.count() == N_TENSORS

    # Done once: asking again returns the copy, and a duplicate job reuses it.
    third = api.post(convert_url(actors.org, source), {"format": "safetensors"}, format="json")
    assert third.status_code == 200 and third.json()["model"]["id"] == copy.pk and third.json()["job"] is None
    duplicate = do_enqueue_job(
        actors.org, TO_HF_JOB, user=actors.owner, project=actors.project, params={"model": source.pk}
    )
    assert run(duplicate.pk).result == {"model": copy.pk, "source": source.pk, "reused": True}
    assert LanguageModel.objects.filter(derived_from=source).count() == 1

    # The copy opens in torch (transformers) from its blobs laid out under their names.
    from transformers import AutoModelForCausalLM

    folder = blobs.materialize_folder([(f.path, f.blob) for f in copy.files.select_related("blob")], tmp_path / "copy")
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert model.config.num_hidden_layers == CONFIG.n_layers

    # Pages: the source lists its converted copy; the copy says where it came from.
    client.force_login(actors.viewer)
    page = client.get(f"/o/{actors.org.slug}/models/{source.pk}/").content.decode()
    assert "Converted copies" in page and f"/o/{actors.org.slug}/models/{copy.pk}/" in page
    assert "Make a torch copy" not in page  # viewers convert nothing
    derived = client.get(f"/o/{actors.org.slug}/models/{copy.pk}/").content.decode()
    assert "converted from" in derived and "Convert to GGUF" not in derived


def test_safetensors_teacher_gets_a_gguf_from_the_page(
    actors, client, tmp_path, settings, transactional_db, llama_converter
):
    settings.LLAMA_CPP_TOOLS_DIR = TOOLS_DIR
    source = imported(write_hf_llama(tmp_path / "hf", CONFIG, shards=2), actors, "hf teacher")
    client.force_login(actors.member)
    page = client.get(f"/o/{actors.org.slug}/models/{source.pk}/").content.decode()
    assert "Convert to GGUF" in page

    response = client.post(f"/o/{actors.org.slug}/models/{source.pk}/convert/", {"format": "gguf"})
    job = Job.objects.get(kind=TO_GGUF_JOB)
    assert response.status_code == 302 and response["Location"] == f"/o/{actors.org.slug}/jobs/{job.pk}/"
    assert job.params == {"model": source.pk, "outtype": "f16"}
    job = run(job.pk)
    assert job.status == "succeeded", job.error + job.log
    copy = LanguageModel.objects.get(derived_from=source)
    assert copy.format == "gguf" and copy.file_type == "MOSTLY_F16" and copy.capabilities["chat"] is True
    assert [f.path for f in copy.files.all()] == ["hf-teacher-f16.gguf"]
    assert run_inventory(copy).status == "succeeded"

    # The same request now leads to the copy; another tensor type is another copy.
    response = client.post(f"/o/{actors.org.slug}/models/{source.pk}/convert/", {"format": "gguf"})
    assert response["Location"] == f"/o/{actors.org.slug}/models/{copy.pk}/"
    q8 = do_request_conversion(source, actors.member, "gguf", outtype="q8_0", enqueue=False)
    assert q8.derivative is None and q8.job.params["outtype"] == "q8_0"


def test_refusals(actors, api_as, tmp_path, transactional_db):
    api = api_as(actors.member)
    gpt2 = imported(write_gguf_llama(tmp_path / "gpt2.gguf", CONFIG, architecture="gpt2"), actors, "gpt2")
    response = api.post(convert_url(actors.org, gpt2), {"format": "safetensors"}, format="json")
    assert response.status_code == 400 and "llama-family" in response.json()["error"]["message"]

    llama = imported(write_gguf_llama(tmp_path / "llama.gguf", CONFIG), actors, "llama")
    response = api.post(convert_url(actors.org, llama), {"format": "gguf"}, format="json")
    assert response.status_code == 400 and "already GGUF" in response.json()["error"]["message"]
    assert api.post(convert_url(actors.org, llama), {"format": "onnx"}, format="json").status_code == 400
    with pytest.raises(ActionError, match="GGUF conversions only"):
        do_request_conversion(llama, actors.member, "hf", outtype="q8_0")

    LanguageModel.objects.filter(pk=llama.pk).update(status=ModelStatus.IMPORTING)
    response = api.post(convert_url(actors.org, llama), {"format": "safetensors"}, format="json")
    assert response.status_code == 409 and "ready" in response.json()["error"]["message"]

    LanguageModel.objects.filter(pk=llama.pk).update(status=ModelStatus.READY)
    assert (
        api_as(actors.viewer).post(convert_url(actors.org, llama), {"format": "safetensors"}, format="json").status_code
        == 403
    )
    assert not Job.objects.filter(kind__in=[TO_HF_JOB, TO_GGUF_JOB]).exists()


def test_a_failed_conversion_leaves_nothing(actors, tmp_path, monkeypatch, transactional_db):
    source = imported(write_gguf_llama(tmp_path / "tiny.gguf", CONFIG), actors, "tiny")
    blobs_before = set(Blob.objects.values_list("sha256", flat=True))

    # Fails after the files were stored as blobs: they are collected, no model row exists.
    import projects.actions.teachers

    def refuse(*args, **kwargs):
        raise ActionError("Project is archived.")

    monkeypatch.setattr(projects.actions.teachers, "do_create_model", refuse)
    job = run(do_request_conversion(source, actors.member, "hf").job.pk)
    assert job.status == "failed" and "archived" in job.error
    assert not LanguageModel.objects.filter(derived_from=source).exists()
    assert set(Blob.objects.values_list("sha256", flat=True)) == blobs_before
    assert not conversion_workdir(job.pk).exists()
    monkeypatch.undo()

    # The stored GGUF got damaged: the engine refuses it, nothing is kept.
    stored = blobs.local_path(source.files.get().blob)
    stored.write_bytes(stored.read_bytes()[:300])
    job = run(do_request_conversion(source, actors.member, "hf").job.pk)
    assert job.status == "failed" and "tiny.gguf" in job.error
    assert not LanguageModel.objects.filter(derived_from=source).exists()
    assert set(Blob.objects.values_list("sha256", flat=True)) == blobs_before

    # A worker that died mid-conversion: reaping removes its work folder.
    lost = do_request_conversion(source, actors.member, "hf", enqueue=False).job
    Job.objects.filter(pk=lost.pk).update(status="running", heartbeat_at=timezone.now() - timedelta(hours=1))
    conversion_workdir(lost.pk).mkdir(parents=True)
    (conversion_workdir(lost.pk) / "model.safetensors").write_bytes(b"half")
    assert reap_stale_jobs(force=True) == 1
    assert not conversion_workdir(lost.pk).exists()
