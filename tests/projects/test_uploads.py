"""Chunked, resumable uploads into content-addressed blobs."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from projects import blobs
from projects.models import Blob, Upload, UploadStatus

CHUNK = 1000


def payload(size: int, seed: int = 1) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def put_chunk(api, url, data: bytes, start: int, total: int, **headers):
    return api.generic(
        "PUT",
        url,
        data,
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes {start}-{start + len(data) - 1}/{total}",
        **headers,
    )


def upload_via_api(api, org, project, data: bytes, name="model.gguf", **extra) -> dict:
    base = f"/api/v1/orgs/{org.slug}/uploads/"
    created = api.post(base, {"project": project.slug, "filename": name, "size": len(data), **extra}, format="json")
    assert created.status_code == 201, created.content
    url = f"{base}{created.json()['id']}/"
    for start in range(0, len(data), CHUNK):
        response = put_chunk(api, url, data[start : start + CHUNK], start, len(data))
        assert response.status_code == 200, response.content
        assert response.json()["offset"] == min(start + CHUNK, len(data))
    return api.post(f"{url}complete/").json()


def test_chunked_upload_becomes_a_blob_with_matching_hash(actors, api_as):
    data = payload(3500)
    body = upload_via_api(
        api_as(actors.member), actors.org, actors.project, data, expected_sha256=hashlib.sha256(data).hexdigest()
    )
    assert body["status"] == "complete"
    assert body["blob_sha256"] == hashlib.sha256(data).hexdigest()
    blob = Blob.objects.get(pk=body["blob_sha256"])
    assert blob.size == 3500
    assert blobs.local_path(blob).read_bytes() == data
    assert not blobs.part_path(Upload.objects.get(pk=body["id"])).exists()


def test_interrupted_upload_resumes_from_what_arrived(actors, api_as):
    data = payload(2500, seed=2)
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    upload_id = api.post(
        base, {"project": actors.project.slug, "filename": "big.gguf", "size": len(data)}, format="json"
    ).json()["id"]
    url = f"{base}{upload_id}/"
    assert put_chunk(api, url, data[:1000], 0, len(data)).status_code == 200
    # The connection drops 300 bytes into the second chunk: only those arrive.
    upload = Upload.objects.get(pk=upload_id)
    offset = blobs.receive_chunk(upload, 1000, io.BytesIO(data[1000:1300]), 1000)
    assert offset == 1300
    # The client lost track and re-sends the second chunk from its start: refused, told where to resume.
    response = put_chunk(api, url, data[1000:2000], 1000, len(data))
    assert response.status_code == 409 and response.json()["error"]["offset"] == 1300
    assert api.get(url).json()["offset"] == 1300
    assert put_chunk(api, url, data[1300:2500], 1300, len(data)).status_code == 200
    body = api.post(f"{url}complete/").json()
    assert body["blob_sha256"] == hashlib.sha256(data).hexdigest()
    assert blobs.local_path(Blob.objects.get(pk=body["blob_sha256"])).read_bytes() == data


def test_same_file_twice_is_one_blob(actors, api_as):
    data = payload(1500, seed=3)
    first = upload_via_api(api_as(actors.member), actors.org, actors.project, data)
    second = upload_via_api(api_as(actors.outsider), actors.other_org, actors.other_project, data)
    assert first["blob_sha256"] == second["blob_sha256"]
    assert Blob.objects.count() == 1
    stored = list(Path(default_storage.path("blobs")).rglob("*"))
    assert len([p for p in stored if p.is_file()]) == 1


def test_incomplete_upload_cannot_complete(actors, api_as):
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    upload_id = api.post(
        base, {"project": actors.project.slug, "filename": "x.gguf", "size": 2000}, format="json"
    ).json()["id"]
    put_chunk(api, f"{base}{upload_id}/", payload(1000), 0, 2000)
    response = api.post(f"{base}{upload_id}/complete/")
    assert response.status_code == 409 and "1000 of 2000 bytes arrived" in response.json()["error"]["message"]
    assert not Blob.objects.exists()


def test_wrong_whole_file_hash_keeps_nothing(actors, api_as):
    data = payload(1200, seed=4)
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    created = api.post(
        base,
        {"project": actors.project.slug, "filename": "x.gguf", "size": len(data), "expected_sha256": "0" * 64},
        format="json",
    ).json()
    url = f"{base}{created['id']}/"
    put_chunk(api, url, data[:1000], 0, len(data))
    put_chunk(api, url, data[1000:], 1000, len(data))
    response = api.post(f"{url}complete/")
    assert response.status_code == 409 and "arrived corrupted" in response.json()["error"]["message"]
    assert not Blob.objects.exists()
    upload = Upload.objects.get(pk=created["id"])
    assert upload.status == UploadStatus.ABORTED and not blobs.part_path(upload).exists()


def test_damaged_chunk_is_dropped(actors, api_as):
    data = payload(1500, seed=5)
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    url = (
        base
        + api.post(
            base, {"project": actors.project.slug, "filename": "x.gguf", "size": len(data)}, format="json"
        ).json()["id"]
        + "/"
    )
    good = hashlib.sha256(data[:1000]).hexdigest()
    response = put_chunk(api, url, data[:1000], 0, len(data), HTTP_X_CHUNK_SHA256="f" * 64)
    assert response.status_code == 409 and "damaged" in response.json()["error"]["message"]
    assert api.get(url).json()["offset"] == 0
    assert put_chunk(api, url, data[:1000], 0, len(data), HTTP_X_CHUNK_SHA256=good).status_code == 200


def test_bad_upload_requests(actors, api_as, settings):
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    response = api.post(base, {"project": actors.project.slug, "filename": "empty.gguf", "size": 0}, format="json")
    assert response.status_code == 400
    settings.UPLOAD_MAX_BYTES = 10_000
    response = api.post(base, {"project": actors.project.slug, "filename": "huge.gguf", "size": 10_001}, format="json")
    assert response.status_code == 400 and "import_model" in response.json()["error"]["message"]
    response = api.post(base, {"project": actors.other_project.slug, "filename": "x", "size": 10}, format="json")
    assert response.status_code == 404
    url = (
        base
        + api.post(base, {"project": actors.project.slug, "filename": "x.gguf", "size": 100}, format="json").json()[
            "id"
        ]
        + "/"
    )
    assert (
        api.generic("PUT", url, b"x" * 10, content_type="application/octet-stream").status_code == 400
    )  # no Content-Range
    assert put_chunk(api, url, b"x" * 10, 95, 100).status_code == 409  # past the end -> offset mismatch first
    assert put_chunk(api, url, b"x" * 10, 0, 999).status_code == 400  # wrong total
    assert not Upload.objects.filter(organization=actors.other_org).exists()


def test_garbage_collection_deletes_only_unreferenced_blobs(actors, api_as, tmp_path):
    kept = upload_via_api(api_as(actors.member), actors.org, actors.project, payload(1100, seed=6))["blob_sha256"]
    loose = tmp_path / "loose.bin"
    loose.write_bytes(payload(900, seed=7))
    orphan = blobs.store_path(loose)
    orphan_file = blobs.local_path(orphan)
    assert orphan_file.exists()
    assert blobs.collect_garbage() == (1, 900)
    assert not orphan_file.exists() and not Blob.objects.filter(pk=orphan.pk).exists()
    assert Blob.objects.filter(pk=kept).exists()
    assert loose.exists()  # store_path without move= leaves the source alone
    os.remove(loose)


def test_collect_blobs_command(actors, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    loose = tmp_path / "loose.bin"
    loose.write_bytes(payload(2048, seed=8))
    blobs.store_path(loose, move=True)
    out = StringIO()
    call_command("collect_blobs", stdout=out)
    assert "1 unreferenced blob(s) deleted, 2.0\xa0KB freed." in out.getvalue()
    assert not Blob.objects.exists()


def test_chunk_checked_in_many_pieces_keeps_both_digests_in_order(actors, api_as, monkeypatch):
    """A chunk longer than blobs.IO_CHUNK is read in pieces; its own SHA-256 (computed on
    another thread) and the running whole-file hash must both see them in order."""
    monkeypatch.setattr(blobs, "IO_CHUNK", 64)
    data = payload(3000, seed=7)
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    created = api.post(base, {"project": actors.project.slug, "filename": "p.gguf", "size": len(data)}, format="json")
    url = f"{base}{created.json()['id']}/"
    first, second = data[:1700], data[1700:]
    damaged = bytes([second[0] ^ 1]) + second[1:]
    assert (
        put_chunk(api, url, first, 0, len(data), HTTP_X_CHUNK_SHA256=hashlib.sha256(first).hexdigest()).status_code
        == 200
    )
    # A damaged second chunk is refused and dropped; the running hash is rolled back with it.
    response = put_chunk(api, url, damaged, 1700, len(data), HTTP_X_CHUNK_SHA256=hashlib.sha256(second).hexdigest())
    assert response.status_code == 409
    assert api.get(url).json()["offset"] == 1700
    assert (
        put_chunk(api, url, second, 1700, len(data), HTTP_X_CHUNK_SHA256=hashlib.sha256(second).hexdigest()).status_code
        == 200
    )
    upload = Upload.objects.get(pk=url.rstrip("/").rsplit("/", 1)[1])
    assert blobs._running[str(upload.pk)][3].hexdigest() == hashlib.sha256(data).hexdigest()  # complete will use it
    body = api.post(f"{url}complete/").json()
    assert body["blob_sha256"] == hashlib.sha256(data).hexdigest()


def _upload_in_chunks(api, org, project, data: bytes, sizes: list[int]) -> tuple[str, dict]:
    base = f"/api/v1/orgs/{org.slug}/uploads/"
    created = api.post(base, {"project": project.slug, "filename": "m.gguf", "size": len(data)}, format="json")
    url = f"{base}{created.json()['id']}/"
    start = 0
    for size in sizes:
        response = put_chunk(api, url, data[start : start + size], start, len(data))
        assert response.status_code == 200, response.content
        start += size
    assert start == len(data)
    return url, api.post(f"{url}complete/").json()


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "page_cache"])
def test_chunks_at_unaligned_offsets_are_stored_exactly(actors, api_as, settings, monkeypatch, direct):
    """Chunks that start and end mid-block, each spanning several buffers: with O_DIRECT the partial
    block a chunk leaves is read back and rewritten whole by the next one."""
    settings.UPLOAD_DIRECT_IO = direct
    monkeypatch.setattr(blobs, "IO_CHUNK", 64 * 1024)
    direct_bytes = []
    real_pwrite_all = blobs._pwrite_all

    def counting_pwrite_all(fd, view, offset):
        if os.O_DIRECT & _fd_flags(fd):
            direct_bytes.append(len(view))
        real_pwrite_all(fd, view, offset)

    monkeypatch.setattr(blobs, "_pwrite_all", counting_pwrite_all)
    data = payload(300_001, seed=11)
    _, body = _upload_in_chunks(
        api_as(actors.member), actors.org, actors.project, data, [70_001, 12_345, 4096, 200_000, 13_559]
    )
    assert body["blob_sha256"] == hashlib.sha256(data).hexdigest()
    assert blobs.local_path(Blob.objects.get(pk=body["blob_sha256"])).read_bytes() == data
    if direct:
        # Most bytes went around the page cache (the test's DATA_DIR is on a disk that allows it).
        assert sum(direct_bytes) > len(data) // 2
        assert all(size % blobs.DIRECT_ALIGN == 0 for size in direct_bytes)
    else:
        assert not direct_bytes


def _fd_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def test_a_chunk_the_disk_refuses_keeps_nothing_and_the_upload_goes_on(actors, api_as, monkeypatch):
    """A full disk cannot be made here: the part file's second write raises ENOSPC as the kernel would."""
    import errno

    monkeypatch.setattr(blobs, "IO_CHUNK", 16 * 1024)
    data = payload(100_000, seed=12)
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    created = api.post(base, {"project": actors.project.slug, "filename": "m.gguf", "size": len(data)}, format="json")
    url = f"{base}{created.json()['id']}/"
    assert put_chunk(api, url, data[:30_000], 0, len(data)).status_code == 200
    real_write, calls = blobs._PartFile.write, []

    def write_until_full(self, view, offset):
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, view, offset)

    monkeypatch.setattr(blobs._PartFile, "write", write_until_full)
    response = put_chunk(api, url, data[30_000:], 30_000, len(data))
    assert response.status_code == 409
    assert (
        "could not store the chunk at byte 30000 (No space left on device); nothing of it was kept"
        in response.json()["error"]["message"]
    )
    assert api.get(url).json()["offset"] == 30_000
    assert blobs.part_path(Upload.objects.get(pk=url.rstrip("/").rsplit("/", 1)[1])).stat().st_size == 30_000
    monkeypatch.setattr(blobs._PartFile, "write", real_write)
    assert put_chunk(api, url, data[30_000:], 30_000, len(data)).status_code == 200
    assert api.post(f"{url}complete/").json()["blob_sha256"] == hashlib.sha256(data).hexdigest()


def test_direct_writes_the_file_system_refuses_fall_back_to_the_page_cache(tmp_path, monkeypatch):
    """A file system that opens files for O_DIRECT but wants another alignment answers EINVAL to
    the write (none here does: the direct write is made to fail as such a file system fails it)."""
    import errno

    real_pwrite_all = blobs._pwrite_all

    def refusing_direct(fd, view, offset):
        if os.O_DIRECT & _fd_flags(fd):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real_pwrite_all(fd, view, offset)

    monkeypatch.setattr(blobs, "_pwrite_all", refusing_direct)
    data = payload(3 * blobs.DIRECT_ALIGN + 100, seed=13)
    part = blobs._PartFile(tmp_path / "x.part", direct=True)
    try:
        assert part.direct
        part.write(memoryview(data)[: 2 * blobs.DIRECT_ALIGN], 0)
        assert not part.direct  # from now on through the page cache
        part.write(memoryview(data)[2 * blobs.DIRECT_ALIGN :], 2 * blobs.DIRECT_ALIGN)
    finally:
        part.close()
    assert (tmp_path / "x.part").read_bytes() == data


def test_a_request_arriving_while_another_writes_the_upload_is_refused(actors, api_as):
    """Two writers of one part file (a second tab, a script resuming the same upload) would write
    over each other: while one request works on the upload, chunks, completion and abort wait."""
    data = payload(5000, seed=14)
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/uploads/"
    created = api.post(base, {"project": actors.project.slug, "filename": "m.gguf", "size": len(data)}, format="json")
    url = f"{base}{created.json()['id']}/"
    assert put_chunk(api, url, data[:2000], 0, len(data)).status_code == 200
    upload = Upload.objects.get(pk=url.rstrip("/").rsplit("/", 1)[1])
    with blobs._exclusive(upload):  # a chunk of this upload is being received
        for response in (
            put_chunk(api, url, data[2000:], 2000, len(data)),
            api.post(f"{url}complete/"),
            api.delete(url),
        ):
            assert response.status_code == 409, response.content
            assert "Another request is writing this upload right now" in response.json()["error"]["message"]
        assert blobs.part_path(upload).stat().st_size == 2000
    assert put_chunk(api, url, data[2000:], 2000, len(data)).status_code == 200
    assert api.post(f"{url}complete/").json()["blob_sha256"] == hashlib.sha256(data).hexdigest()
