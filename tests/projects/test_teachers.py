"""Teacher models: upload → header check → model row → tensor inventory job; pages, API, deletion."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from projects.background import execute
from projects.models import Blob, Job, LanguageModel, ModelStatus, TensorRecord, Upload
from tests.projects.test_uploads import put_chunk
from tests.support.tiny_models import TinyLlamaConfig, llama_weights, write_gguf_llama, write_hf_llama

CONFIG = TinyLlamaConfig(n_layers=3)


def upload_file(api, org, project, path: Path, relative_path: str = "") -> str:
    data = path.read_bytes()
    base = f"/api/v1/orgs/{org.slug}/uploads/"
    created = api.post(
        base,
        {
            "project": project.slug,
            "filename": path.name,
            "size": len(data),
            "relative_path": relative_path,
            "expected_sha256": hashlib.sha256(data).hexdigest(),
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"{base}{created.json()['id']}/"
    step = 64 * 1024
    for start in range(0, len(data), step):
        assert put_chunk(api, url, data[start : start + step], start, len(data)).status_code == 200
    assert api.post(f"{url}complete/").json()["status"] == "complete"
    return created.json()["id"]


def create_model(api, org, project, upload_ids, name="teacher"):
    return api.post(
        f"/api/v1/orgs/{org.slug}/models/",
        {"project": project.slug, "name": name, "uploads": upload_ids},
        format="json",
    )


def run_inventory(model_id: int) -> Job:
    job = Job.objects.get(kind="projects.inventory_model", params__model=model_id, status="queued")
    execute(job.pk)  # what the worker runs, in this process
    job.refresh_from_db()
    return job


def test_gguf_upload_becomes_an_inventoried_model(actors, api_as, tmp_path, transactional_db):
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG, tensor_type="Q8_0")
    api = api_as(actors.member)
    response = create_model(api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, gguf)])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "importing" and body["format"] == "gguf" and body["architecture"] == "llama"
    assert body["metadata"]["block_count"] == 3 and body["capabilities"]["chat"] is True
    assert [f["path"] for f in body["files"]] == ["tiny.gguf"]
    assert not Upload.objects.exists()  # consumed

    job = run_inventory(body["id"])
    assert job.status == "succeeded", job.error
    model = LanguageModel.objects.get(pk=body["id"])
    assert model.status == ModelStatus.READY
    tensors = TensorRecord.objects.filter(model=model)
    assert tensors.count() == 3 * 9 + 3  # 9 per block; embedding, final norm, output head
    data = gguf.read_bytes()
    first = tensors.get(name="blk.0.attn_q.weight")
    assert first.sha256 == hashlib.sha256(data[first.offset : first.offset + first.n_bytes]).hexdigest()
    assert first.shape == [64, 64] and first.dtype == "Q8_0" and first.component == "attn_q" and first.layer == 0

    base = f"/api/v1/orgs/{actors.org.slug}/models/{model.pk}/"
    layer1 = api.get(base + "tensors/?layer=1").json()
    assert layer1["count"] == 9 and {t["layer"] for t in layer1["results"]} == {1}
    mlp_down = api.get(base + "tensors/?component=mlp_down").json()
    assert mlp_down["count"] == 3
    assert api.get(base + "tensors/?layer=x").status_code == 400
    download = api.get(base + "files/tiny.gguf/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == data


def test_sharded_safetensors_folder_becomes_a_model(actors, api_as, tmp_path, transactional_db):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    api = api_as(actors.member)
    ids = [upload_file(api, actors.org, actors.project, p, relative_path=p.name) for p in sorted(folder.iterdir())]
    response = create_model(api, actors.org, actors.project, ids, name="hf teacher")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["format"] == "safetensors" and body["capabilities"]["analysis"] is True
    assert {f["path"] for f in body["files"]} == {p.name for p in folder.iterdir()}
    assert run_inventory(body["id"]).status == "succeeded"
    model = LanguageModel.objects.get(pk=body["id"])
    assert model.tensors.count() == 3 * 9 + 3
    assert model.tensors.values("file__path").distinct().count() == 2  # both shards


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.gguf", b"GGUF\x03\x00\x00\x00" + b"\x01" * 8, "GGUF"),
        ("weights.bin", pickle.dumps({"w": [1, 2, 3]}), "pickle"),
        ("model.pt", b"PK\x03\x04" + b"\x00" * 60, "pickle"),
        ("notes.txt", b"hello, this is not a model at all\n" * 4, "not a GGUF or safetensors"),
    ],
)
def test_refused_files_leave_nothing_behind(actors, api_as, tmp_path, name, content, message, settings):
    path = tmp_path / name
    path.write_bytes(content)
    api = api_as(actors.member)
    response = create_model(api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, path)])
    assert response.status_code == 400, response.content
    assert message.lower() in response.json()["error"]["message"].lower()
    assert name in response.json()["error"]["message"]
    assert not LanguageModel.objects.exists() and not Blob.objects.exists() and not Upload.objects.exists()
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*") if p.is_file()] if media.exists() else True


def test_truncated_gguf_is_refused(actors, api_as, tmp_path):
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])
    api = api_as(actors.member)
    response = create_model(api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, cut)])
    assert response.status_code == 400 and "cut.gguf" in response.json()["error"]["message"]
    assert not Blob.objects.exists()


def test_comparison_counts_shared_layers(actors, api_as, tmp_path, transactional_db):
    weights_a = llama_weights(CONFIG, seed=1)
    weights_b = dict(weights_a)
    for name in list(weights_b):  # change layer 2 only
        if ".layers.2." in name:
            weights_b[name] = weights_b[name] * 2
    a = write_gguf_llama(tmp_path / "a.gguf", CONFIG, weights_a)
    b = write_gguf_llama(tmp_path / "b.gguf", CONFIG, weights_b)
    api = api_as(actors.member)
    ids = []
    for path in (a, b):
        body = create_model(
            api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, path)], name=path.stem
        ).json()
        run_inventory(body["id"])
        ids.append(body["id"])
    result = api.get(f"/api/v1/orgs/{actors.org.slug}/models/{ids[0]}/compare/?with={ids[1]}").json()
    assert result["shared_layers"] == 2 and result["layers_a"] == 3
    assert sorted(map(tuple, result["shared_layer_pairs"])) == [(0, 0), (1, 1)]
    assert result["param_ratio"] == 1.0
    assert result["shared_tensors"] == 3 * 9 + 3 - 9  # all but layer 2's nine tensors
    # Another organisation's model cannot be named.
    assert api.get(f"/api/v1/orgs/{actors.org.slug}/models/{ids[0]}/compare/?with=999999").status_code == 404


def test_deleting_a_model_others_depend_on_is_refused(actors, api_as, tmp_path, transactional_db):
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG)
    api = api_as(actors.member)
    parent = create_model(api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, gguf)]).json()
    child = LanguageModel.objects.create(
        organization=actors.org,
        project=actors.project,
        name="converted",
        format="safetensors",
        derived_from_id=parent["id"],
    )
    response = api.delete(f"/api/v1/orgs/{actors.org.slug}/models/{parent['id']}/")
    assert response.status_code == 409 and "converted" in response.json()["error"]["message"]
    assert Blob.objects.count() == 1
    child.delete()
    assert api.delete(f"/api/v1/orgs/{actors.org.slug}/models/{parent['id']}/").status_code == 204
    assert not Blob.objects.exists()  # its only file's blob was collected


def test_inventory_failure_marks_the_model_failed(actors, api_as, tmp_path, transactional_db):
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG)
    api = api_as(actors.member)
    body = create_model(api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, gguf)]).json()
    blob = Blob.objects.get()
    from projects.blobs import local_path

    stored = local_path(blob)
    stored.write_bytes(stored.read_bytes()[:200])  # the stored file got damaged after the check
    job = run_inventory(body["id"])
    assert job.status == "failed"
    model = LanguageModel.objects.get(pk=body["id"])
    assert model.status == ModelStatus.FAILED and f"job #{job.pk}" in model.error
    assert not model.tensors.exists()


def test_model_pages_show_layers_breakdown_and_comparison(actors, api_as, client, tmp_path, transactional_db):
    api = api_as(actors.member)
    ids = []
    for seed in (1, 2):
        gguf = write_gguf_llama(tmp_path / f"m{seed}.gguf", CONFIG, seed=seed)
        body = create_model(
            api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, gguf)], name=f"m{seed}"
        ).json()
        run_inventory(body["id"])
        ids.append(body["id"])
    client.force_login(actors.viewer)
    listing = client.get(f"/o/{actors.org.slug}/models/").content.decode()
    assert "m1" in listing and "m2" in listing and "Upload a model" not in listing  # viewers upload nothing
    page = client.get(f"/o/{actors.org.slug}/models/{ids[0]}/")
    html = page.content.decode()
    assert len(page.context["layers"]) == 3
    layer0 = page.context["layers"][0]
    assert layer0["attention"] == 64 * 64 * 2 + 64 * 32 * 2 and layer0["mlp"] == 3 * 64 * 128 and layer0["norm"] == 128
    groups = {part["group"]: part["params"] for part in page.context["breakdown"]}
    assert sum(groups.values()) == LanguageModel.objects.get(pk=ids[0]).parameter_count
    assert "Parameters by component" in html and "Layers" in html and "m1.gguf" in html
    compared = client.get(f"/o/{actors.org.slug}/models/{ids[0]}/compare/?with={ids[1]}")
    assert compared.context["result"]["shared_tensors"] == 0  # different seeds share nothing
    assert "0 of 3" in compared.content.decode()


def test_import_model_command_runs_the_same_path(actors, tmp_path, transactional_db):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    out = StringIO()
    call_command(
        "import_model", str(folder), org=actors.org.slug, project=actors.project.slug, name="server copy", stdout=out
    )
    model = LanguageModel.objects.get(name="server copy")
    assert model.status == ModelStatus.READY and model.format == "safetensors"
    assert model.tensors.count() == 3 * 9 + 3 and "is ready" in out.getvalue()
    assert Job.objects.get(kind="projects.inventory_model").status == "succeeded"
    bad = tmp_path / "model.pth"
    bad.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CommandError, match="pickle"):
        call_command("import_model", str(bad), org=actors.org.slug, project=actors.project.slug, stdout=StringIO())
    assert Blob.objects.count() == len(list(folder.iterdir()))  # the refused file left no blob
    with pytest.raises(CommandError, match="No project"):
        call_command(
            "import_model", str(folder), org=actors.org.slug, project=actors.other_project.slug, stdout=StringIO()
        )
