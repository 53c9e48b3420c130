"""A Hugging Face model folder uploaded as one .zip: checked at once, unpacked by a job, then the same model.

A refused zip — at once or in the job — leaves no model, no blob, no upload and no part file.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from projects import blobs
from projects.actions import do_cancel_job
from projects.background import execute
from projects.models import Blob, Job, LanguageModel, ModelStatus, TensorRecord, Upload
from tests.projects.test_teachers import create_model, run_inventory, upload_file
from tests.support.tiny_models import TinyLlamaConfig, write_hf_llama

CONFIG = TinyLlamaConfig(n_layers=3)
UNPACK = "projects.unpack_model"


def zip_folder(
    folder: Path,
    path: Path,
    *,
    top: str = "",
    extra: dict[str, bytes] | None = None,
    skip: tuple[str, ...] = (),
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Zip a model folder as people do: its files under ``top/`` (or at the top), plus ``extra``."""
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(path, "w", compression) as archive:
        if top:
            archive.writestr(zipfile.ZipInfo(prefix), b"")  # the folder's own entry
        for file in sorted(folder.iterdir()):
            if file.name not in skip:
                archive.write(file, prefix + file.name)
        for name, data in (extra or {}).items():
            archive.writestr(prefix + name, data)
    return path


def tensors_of(model: LanguageModel) -> list[tuple]:
    return sorted(
        (t.name, t.file.path, tuple(t.shape), t.dtype, t.offset, t.n_bytes, t.sha256, t.layer, t.component)
        for t in TensorRecord.objects.filter(model=model).select_related("file")
    )


def assert_nothing_left(settings, upload_ids=()) -> None:
    assert not LanguageModel.objects.exists()
    assert not Blob.objects.exists()
    assert not Upload.objects.exists()
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*") if p.is_file()] if media.exists() else True
    uploads = blobs.uploads_dir()
    for upload_id in upload_ids:
        assert not (uploads / f"{upload_id}.part").exists()
    assert not list(uploads.glob(f"stream-{os.getpid()}-*"))  # no half-unpacked member either


def unpack(response) -> Job:
    """The unpack job a 202 answered with, run here as a worker would."""
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.kind == UNPACK and job.status == "queued"
    execute(job.pk)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize(("shards", "top"), [(2, "tiny-llama"), (1, "")])
def test_zipped_folder_becomes_the_same_model_as_the_folder(actors, api_as, tmp_path, transactional_db, shards, top):
    folder = write_hf_llama(tmp_path / "tiny-llama", CONFIG, shards=shards)
    api = api_as(actors.member)
    ids = [upload_file(api, actors.org, actors.project, p, relative_path=p.name) for p in sorted(folder.iterdir())]
    from_folder = create_model(api, actors.org, actors.project, ids, name="from the folder").json()
    assert run_inventory(from_folder["id"]).status == "succeeded"
    folder_model = LanguageModel.objects.get(pk=from_folder["id"])
    blobs_of_the_folder = set(Blob.objects.values_list("pk", flat=True))

    archive = zip_folder(
        folder,
        tmp_path / "Tiny Llama.zip",
        top=top,
        extra={"README.md": b"# Tiny llama\n", ".gitattributes": b"*.safetensors lfs\n"},
    )
    upload_id = upload_file(api, actors.org, actors.project, archive)
    job = unpack(create_model(api, actors.org, actors.project, [upload_id], name=""))
    assert job.status == "succeeded", job.error
    model = LanguageModel.objects.get(pk=job.result["model"])
    assert job.artifacts == [{"label": "Tiny Llama", "url": f"/o/{actors.org.slug}/models/{model.pk}/"}]
    assert model.name == "Tiny Llama" and model.format == "safetensors" and model.status == ModelStatus.IMPORTING
    assert model.architecture == folder_model.architecture and model.parameter_count == folder_model.parameter_count
    assert any("README.md" in w and "left out" in w for w in model.warnings)

    assert run_inventory(model.pk).status == "succeeded"
    model.refresh_from_db()
    assert model.status == ModelStatus.READY
    assert tensors_of(model) == tensors_of(folder_model) and len(tensors_of(model)) == 3 * 9 + 3
    # The same files under the same paths, stored once: the zip added no blob, and was consumed.
    assert sorted(model.files.values_list("path", "blob_id")) == sorted(
        folder_model.files.values_list("path", "blob_id")
    )
    assert set(Blob.objects.values_list("pk", flat=True)) == blobs_of_the_folder
    assert not Upload.objects.exists() and not (blobs.uploads_dir() / f"{upload_id}.part").exists()


def test_zip_first_then_folder_shares_the_blobs_too(actors, api_as, tmp_path, transactional_db):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    api = api_as(actors.member)
    job = unpack(
        create_model(
            api,
            actors.org,
            actors.project,
            [upload_file(api, actors.org, actors.project, zip_folder(folder, tmp_path / "hf.zip", top="hf"))],
        )
    )
    assert job.status == "succeeded", job.error
    stored = set(Blob.objects.values_list("pk", flat=True))
    assert len(stored) == len(list(folder.iterdir()))
    ids = [upload_file(api, actors.org, actors.project, p, relative_path=p.name) for p in sorted(folder.iterdir())]
    assert create_model(api, actors.org, actors.project, ids, name="folder").status_code == 201
    assert set(Blob.objects.values_list("pk", flat=True)) == stored


def bomb(folder: Path, path: Path) -> Path:
    return zip_folder(folder, path, top="m", extra={"zeros.txt": b"0" * (8 * 1024 * 1024)})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda folder, path: zip_folder(folder, path, extra={"../evil": b"x"}),
            "“model.zip” contains a path that leaves the archive (“../evil”)",
        ),
        (bomb, "“model.zip” declares 8,"),  # the cap is 1 MiB in this test
        (
            lambda folder, path: zip_folder(
                folder, path, top="m", extra={"pytorch_model.bin": pickle.dumps({"w": [1, 2]})}
            ),
            "model.zip: refused: the zip holds PyTorch pickle checkpoints (pytorch_model.bin)",
        ),
        (
            lambda folder, path: zip_folder(folder, path, top="m", skip=("config.json",)),
            "model.zip: missing config.json: a Hugging Face model folder needs config.json",
        ),
        (
            lambda folder, path: path.write_bytes(zip_folder(folder, path).read_bytes()[:-200]) and path,
            "“model.zip” is not a zip archive (no end-of-archive record): the file is damaged or not a zip",
        ),
        (
            lambda folder, path: path.write_bytes(b"PK\x03\x04 this only starts like a zip") and path,
            "“model.zip” is not a zip archive",
        ),
    ],
    ids=["path-escape", "zip-bomb", "pickle", "no-config", "truncated", "not-a-zip"],
)
def test_refused_zips_leave_nothing_behind(actors, api_as, tmp_path, settings, transactional_db, build, message):
    settings.MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    path = build(folder, tmp_path / "model.zip")
    api = api_as(actors.member)
    upload_id = upload_file(api, actors.org, actors.project, path)
    response = create_model(api, actors.org, actors.project, [upload_id])
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    assert not Job.objects.filter(kind=UNPACK).exists()
    assert_nothing_left(settings, [upload_id])


def lie_about_size(path: Path, member: str, declare: int) -> None:
    """Make the local header and the directory entry of ``member`` declare ``declare`` bytes."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, offset + 22, declare)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + name_length]) == member.encode():
            struct.pack_into("<I", data, at + 24, declare)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def lying_bomb(folder: Path, path: Path) -> Path:
    zip_folder(folder, path, top="m", extra={"vocab.txt": b"0" * (8 * 1024 * 1024)})
    lie_about_size(path, "m/vocab.txt", 1000)
    return path


def damaged_shard(folder: Path, path: Path) -> Path:
    zip_folder(folder, path, compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model-00002-of-00002.safetensors")
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length + 5000] ^= 0xFF  # one weight byte flipped: bad CRC
    path.write_bytes(bytes(data))
    return path


def garbage_weights(folder: Path, path: Path) -> Path:
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"these are not weights" * 10)
    return zip_folder(folder, path, top="m")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lying_bomb,
            "Refused: “model.zip” inflates past the limit of 1,048,576 bytes of uncompressed data "
            "(MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES) while reading “m/vocab.txt”, although its directory declares",
        ),
        (damaged_shard, "Refused: “model-00002-of-00002.safetensors” in “model.zip” is damaged (Bad CRC-32"),
        (garbage_weights, "Refused: model-00002-of-00002.safetensors: "),
    ],
    ids=["lying-bomb", "damaged-member", "not-safetensors"],
)
def test_zips_refused_while_unpacking_leave_nothing_behind(
    actors, api_as, tmp_path, settings, transactional_db, build, message
):
    settings.MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    path = build(folder, tmp_path / "model.zip")
    api = api_as(actors.member)
    upload_id = upload_file(api, actors.org, actors.project, path)
    job = unpack(create_model(api, actors.org, actors.project, [upload_id]))
    assert job.status == "failed"
    assert job.error.startswith(message), job.error
    assert job.error.endswith("Nothing was kept: fix the zip and upload it again.")
    assert_nothing_left(settings, [upload_id])


def test_a_zip_goes_alone_and_a_cancelled_unpack_keeps_nothing(actors, api_as, tmp_path, settings, transactional_db):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=1)
    archive = zip_folder(folder, tmp_path / "hf.zip")
    api = api_as(actors.member)
    ids = [
        upload_file(api, actors.org, actors.project, archive),
        upload_file(api, actors.org, actors.project, folder / "config.json"),
    ]
    response = create_model(api, actors.org, actors.project, ids)
    assert response.status_code == 400
    assert "hf.zip is a zip: a zipped model folder is uploaded on its own" in response.json()["error"]["message"]
    assert_nothing_left(settings)

    response = create_model(api, actors.org, actors.project, [upload_file(api, actors.org, actors.project, archive)])
    assert response.status_code == 202
    do_cancel_job(Job.objects.get(pk=response.json()["id"]))
    assert_nothing_left(settings)
    # Another organisation cannot use the upload, nor see the job.
    outsider = api_as(actors.outsider)
    upload_id = upload_file(api, actors.org, actors.project, archive)
    assert create_model(outsider, actors.other_org, actors.other_project, [upload_id]).status_code == 404
    assert Upload.objects.filter(pk=upload_id).exists()


def test_import_model_command_unpacks_a_zip(actors, tmp_path, transactional_db):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=2)
    archive = zip_folder(folder, tmp_path / "server-copy.zip", top="hf")
    out = StringIO()
    call_command("import_model", str(archive), org=actors.org.slug, project=actors.project.slug, stdout=out)
    model = LanguageModel.objects.get(name="server-copy")
    assert model.status == ModelStatus.READY and model.tensors.count() == 3 * 9 + 3
    assert Blob.objects.count() == len(list(folder.iterdir()))  # the zip itself is not kept
    bad = zip_folder(folder, tmp_path / "bad.zip", extra={"model.pt": b"PK\x03\x04"})
    with pytest.raises(CommandError, match="pickle"):
        call_command("import_model", str(bad), org=actors.org.slug, project=actors.project.slug, stdout=StringIO())
    assert Blob.objects.count() == len(list(folder.iterdir()))
