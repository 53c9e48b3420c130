"""Datasets: upload → checks → dataset row → processing job → splits, token counts; pages, API, refusals."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from projects import blobs
from projects.actions import ActionError
from projects.actions import datasets as dataset_actions
from projects.background import execute
from projects.engine.datasets import read_documents, split_of
from projects.models import Blob, Dataset, Job, LanguageModel, ModelFile, Upload
from tests.conftest import wait_for_job
from tests.projects.test_uploads import put_chunk

GOOD_PAIR = {
    "clean": "The capital of France is",
    "corrupted": "The capital of Italy is",
    "target": " Paris",
    "distractor": " Rome",
}


# --- Helpers ----------------------------------------------------------------------------------


def upload_bytes(api, org, project, data: bytes, filename: str) -> str:
    """A completed upload through the resumable API; returns its id."""
    base = f"/api/v1/orgs/{org.slug}/uploads/"
    created = api.post(base, {"project": project.slug, "filename": filename, "size": len(data)}, format="json")
    assert created.status_code == 201, created.content
    url = f"{base}{created.json()['id']}/"
    step = 256 * 1024
    for start in range(0, len(data), step):
        assert put_chunk(api, url, data[start : start + step], start, len(data)).status_code == 200
    assert api.post(f"{url}complete/").json()["status"] == "complete"
    return created.json()["id"]


def create_dataset(api, org, upload_id: str, **fields):
    return api.post(f"/api/v1/orgs/{org.slug}/datasets/", {"upload": upload_id, **fields}, format="json")


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def run_job(job_id: int) -> Job:
    """Run a queued job in this process, as the worker would."""
    execute(job_id)
    return Job.objects.get(pk=job_id)


def stored_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def assert_nothing_kept(settings):
    assert not Dataset.objects.exists()
    assert not Upload.objects.exists()
    assert Blob.objects.count() == 0
    assert stored_files(settings) == []
    assert not list(blobs.uploads_dir().glob("dataset-*"))


def zeros_zip(size: int, declare: int | None = None, before: int = 0) -> bytes:
    """A zip of ``before`` small text files, then ``size`` bytes of "0" text (last, so its directory
    entry is the last one); with ``declare``, its headers lie about that member's size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(before):
            archive.writestr(f"doc-{i:03d}.txt", f"harmless document {i}")
        archive.writestr("zz-zeros.txt", b"0" * size)
        offset = archive.getinfo("zz-zeros.txt").header_offset
    data = bytearray(buffer.getvalue())
    if declare is not None:
        struct.pack_into("<I", data, offset + 22, declare)  # local header: uncompressed size
        struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, declare)  # central directory entry
    return bytes(data)


def tiny_tokenizer_json() -> bytes:
    """A word-level tokenizer.json trained here on a few sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        ["what is anaemia?", "anaemia is a lack of red blood cells."],
        trainers.WordLevelTrainer(special_tokens=["[UNK]"]),
    )
    return tokenizer.to_str().encode("utf-8")


def whitespace_pieces(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]+", text))


QA = [
    {"question": f"What is condition {i}?", "answer": f"Condition {i} is " + "quite " * (i % 7) + "rare."}
    for i in range(120)
]


# --- Creating and processing ------------------------------------------------------------------


def test_jsonl_template_upload_becomes_a_ready_dataset(actors, api_as, transactional_db, settings):
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, jsonl(QA), "medical-qa.jsonl")
    response = create_dataset(
        api, actors.org, upload_id, role="domain", options={"template": "Question: {question}\nAnswer: {answer}"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "processing" and body["name"] == "medical-qa" and body["format"] == "jsonl"
    assert body["encoding"] == "utf-8" and body["project"] == actors.project.slug
    assert not Upload.objects.exists()  # consumed: the dataset holds the blob
    dataset = Dataset.objects.get(pk=body["id"])
    assert len(dataset.preview) == 20  # shown while it is processed
    assert dataset.preview[0]["text"] == "Question: What is condition 0?\nAnswer: Condition 0 is rare."

    job = run_job(body["job"])
    assert job.status == "succeeded", job.error
    assert job.queue == "cpu" and job.result["documents"] == 120
    detail = api.get(f"/api/v1/orgs/{actors.org.slug}/datasets/{dataset.pk}/").json()
    assert detail["status"] == "ready" and detail["document_count"] == 120
    assert detail["character_count"] == sum(len(f"Question: {r['question']}\nAnswer: {r['answer']}") for r in QA)
    assert detail["token_count"] is None and detail["tokenizer"] == ""
    assert detail["split"]["train"] + detail["split"]["eval"] == 120 and detail["split"]["ratio"] == 0.9
    assert sum(b["count"] for b in detail["stats"]["characters"]["buckets"]) == 120
    # The normalised documents: one blob of {"id", "text", "source"} lines.
    records = list(read_documents(blobs.local_path(Blob.objects.get(pk=detail["documents_sha256"]))))
    assert [r["id"] for r in records] == list(range(120)) and records[5]["source"] == "line 6"
    preview = api.get(f"/api/v1/orgs/{actors.org.slug}/datasets/{dataset.pk}/preview/").json()
    assert len(preview["documents"]) == 20 and preview["documents"][3]["id"] == 3
    assert set(preview["documents"][0]) >= {"id", "text", "source", "chars", "truncated"}


@pytest.mark.parametrize(
    "filename,data,options,expected",
    [
        ("notes.txt", b"first note\n\nsecond note\n", {}, ["first note", "second note"]),
        ("notes.txt", b"para one\nstill one\n\npara two\n", {"unit": "paragraph"}, ["para one\nstill one", "para two"]),
        ("rows.jsonl", b'{"body": "alpha"}\n{"body": "beta"}\n', {"text_field": "body"}, ["alpha", "beta"]),
        ("table.csv", b'id,content\n1,"x, y"\n2,z\n', {"column": "content"}, ["x, y", "z"]),
        ("cp1252.txt", "caf\xe9 cr\xe8me\n".encode("cp1252"), {}, ["café crème"]),
        ("utf16.txt", "горячий чай\n".encode("utf-16"), {}, ["горячий чай"]),
    ],
)
def test_each_format_through_the_action(actors, transactional_db, tmp_path, filename, data, options, expected):
    path = tmp_path / filename
    path.write_bytes(data)
    dataset = dataset_actions.do_create_dataset_from_file(
        actors.project, actors.member, filename=filename, path=path, options=options
    )
    assert run_job(dataset.job_id).status == "succeeded"
    dataset.refresh_from_db()
    assert dataset.status == "ready" and [p["text"] for p in dataset.preview] == expected


def test_zip_of_text_files_through_the_form(actors, client_as, transactional_db):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("corpus/b.txt", "the second document")
        archive.writestr("corpus/a.txt", "the first document\nhas two lines")
    client = client_as(actors.member)
    url = reverse("dataset-create", kwargs={"org_slug": actors.org.slug})
    assert "Upload and read" in client.get(url).content.decode()
    response = client.post(
        url,
        {
            "project": actors.project.slug,
            "file": SimpleUploadedFile("corpus.zip", buffer.getvalue()),
            "name": "Corpus",
            "role": "control",
            "format": "",
            "split_ratio": "0.5",
            "split_seed": "3",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    dataset = Dataset.objects.get(name="Corpus")
    assert response.url == reverse("dataset-detail", kwargs={"org_slug": actors.org.slug, "dataset_id": dataset.pk})
    assert dataset.format == "zip" and dataset.role == "control" and dataset.split_seed == 3
    assert run_job(dataset.job_id).status == "succeeded"
    dataset.refresh_from_db()
    assert [p["source"] for p in dataset.preview] == ["corpus/a.txt", "corpus/b.txt"]
    page = client.get(response.url).content.decode()
    assert "the first document" in page and "<svg" in page and "Train / eval split" in page
    assert "Documents by length in characters" in page
    listing = client.get(reverse("dataset-list", kwargs={"org_slug": actors.org.slug})).content.decode()
    assert "Corpus" in listing and actors.project.name in listing


# --- Refusals: nothing kept ----------------------------------------------------------------------


def test_zip_bomb_declared_size_is_refused_and_nothing_is_kept(actors, api_as, settings, db):
    settings.DATASET_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    api = api_as(actors.member)
    data = zeros_zip(50 * 1024 * 1024)
    upload_id = upload_bytes(api, actors.org, actors.project, data, "bomb.zip")
    assert Blob.objects.count() == 1 and len(stored_files(settings)) == 1
    response = create_dataset(api, actors.org, upload_id)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "declares 52,428,800 bytes of uncompressed data" in message and "Nothing was kept." in message
    assert_nothing_kept(settings)


def test_zip_bomb_with_lying_headers_is_refused_by_the_job_and_nothing_is_kept(
    actors, transactional_db, settings, tmp_path
):
    settings.DATASET_MAX_UNCOMPRESSED_BYTES = 1024 * 1024
    settings.DATASET_MAX_DOCUMENT_CHARS = 100 * 1024 * 1024
    path = tmp_path / "liar.zip"
    path.write_bytes(zeros_zip(50 * 1024 * 1024, declare=1000, before=25))
    # Its directory looks small and harmless, and so do the first documents: the synchronous checks pass ...
    dataset = dataset_actions.do_create_dataset_from_file(actors.project, actors.member, filename="liar.zip", path=path)
    assert Blob.objects.count() == 1
    # ... and the job counts what really inflates, stops at the cap, and deletes everything.
    job = run_job(dataset.job_id)
    assert job.status == "failed"
    assert job.error.startswith("Refused: “liar.zip” inflates past the limit of 1,048,576 bytes")
    assert "Nothing was kept" in job.error
    assert_nothing_kept(settings)
    assert path.exists()  # the server file it came from is left alone


def test_nested_zip_and_path_traversal_are_refused_and_nothing_is_kept(actors, api_as, settings, db):
    api = api_as(actors.member)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("a.txt", "hidden")
    for entries, message in (
        ([("ok.txt", b"fine"), ("inner.zip", inner.getvalue())], "nested archives are not accepted"),
        ([("ok.txt", b"fine"), ("../../etc/cron.d/evil.txt", b"x")], "a path that leaves the archive"),
    ):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in entries:
                archive.writestr(zipfile.ZipInfo(name), data)
        upload_id = upload_bytes(api, actors.org, actors.project, buffer.getvalue(), "archive.zip")
        response = create_dataset(api, actors.org, upload_id)
        assert response.status_code == 400 and message in response.json()["error"]["message"]
        assert_nothing_kept(settings)


def test_binary_and_empty_files_are_refused_through_the_form(actors, client_as, settings, db):
    client = client_as(actors.member)
    url = reverse("dataset-create", kwargs={"org_slug": actors.org.slug})
    form = {"project": actors.project.slug, "role": "domain", "split_ratio": "0.9", "split_seed": "0"}
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    response = client.post(url, {**form, "file": SimpleUploadedFile("scan.txt", png)})
    assert response.status_code == 400
    assert (
        "looks like a binary file (it contains NUL bytes at byte 8): upload UTF-8 text, JSONL or CSV"
        in response.content.decode()
    )
    assert_nothing_kept(settings)
    response = client.post(url, {**form, "file": SimpleUploadedFile("blank.txt", b"\n \n\t\n")})
    assert response.status_code == 400 and "holds no documents" in response.content.decode()
    assert_nothing_kept(settings)
    response = client.post(url, {**form, "file": SimpleUploadedFile("empty.txt", b"")})
    assert response.status_code == 400
    assert_nothing_kept(settings)


def test_a_huge_line_is_refused_with_its_number(actors, api_as, settings, db):
    settings.DATASET_MAX_DOCUMENT_CHARS = 1000
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, b"short\n" * 3 + b"x" * 5000 + b"\nshort\n", "long.txt")
    response = create_dataset(api, actors.org, upload_id)
    assert response.status_code == 400
    assert "line 4 is longer than 1,000 characters (DATASET_MAX_DOCUMENT_CHARS)" in response.json()["error"]["message"]
    assert_nothing_kept(settings)


def test_options_that_do_not_fit_keep_the_upload_for_another_try(actors, api_as, db):
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, jsonl(QA[:3]), "qa.jsonl")
    response = create_dataset(api, actors.org, upload_id)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (
        "has no field “text”; its fields are: question, answer" in error["message"]
        and "The upload is kept" in error["message"]
    )
    assert error["fields"] == {"options": [error["message"]]}
    assert Upload.objects.filter(pk=upload_id, status="complete").exists()
    response = create_dataset(api, actors.org, upload_id, options={"text_field": "answer"})
    assert response.status_code == 201, response.content
    response = create_dataset(api, actors.org, upload_id)
    assert response.status_code == 404  # consumed by the dataset


# --- Prompt pairs ----------------------------------------------------------------------------------


def test_prompt_pairs_are_validated(actors, api_as, transactional_db, settings):
    api = api_as(actors.member)
    good = upload_bytes(api, actors.org, actors.project, jsonl([GOOD_PAIR] * 5), "pairs.jsonl")
    response = create_dataset(api, actors.org, good, role="prompt_pairs", name="Pairs")
    assert response.status_code == 201, response.content
    assert run_job(response.json()["job"]).status == "succeeded"
    preview = api.get(f"/api/v1/orgs/{actors.org.slug}/datasets/{response.json()['id']}/preview/").json()["documents"]
    assert (
        preview[0]["target"] == " Paris"
        and preview[0]["distractor"] == " Rome"
        and preview[0]["text"] == GOOD_PAIR["clean"]
    )
    # A bad line among the first documents: refused at once, with its number.
    bad = upload_bytes(
        api,
        actors.org,
        actors.project,
        jsonl([GOOD_PAIR, GOOD_PAIR, {**GOOD_PAIR, "distractor": " Paris"}]),
        "bad.jsonl",
    )
    response = create_dataset(api, actors.org, bad, role="prompt_pairs")
    assert response.status_code == 400
    assert "Prompt pairs: line 3: “target” and “distractor” are the same" in response.json()["error"]["message"]
    # A bad line further down: refused by the job, with its number; nothing of it kept.
    later = upload_bytes(
        api, actors.org, actors.project, jsonl([GOOD_PAIR] * 29 + [{**GOOD_PAIR, "corrupted": ""}]), "later.jsonl"
    )
    response = create_dataset(api, actors.org, later, role="prompt_pairs")
    assert response.status_code == 201
    job = run_job(response.json()["job"])
    assert job.status == "failed" and "Prompt pairs: line 30: “corrupted” is empty" in job.error
    assert not Dataset.objects.filter(pk=response.json()["id"]).exists()
    assert Dataset.objects.count() == 1 and Blob.objects.count() == 2  # the good one: source and documents


def test_refused_uploads_are_listed_with_their_reason(actors, client_as, transactional_db, tmp_path):
    path = tmp_path / "later.jsonl"
    path.write_bytes(jsonl([GOOD_PAIR] * 29 + [{**GOOD_PAIR, "corrupted": ""}]))
    dataset = dataset_actions.do_create_dataset_from_file(
        actors.project, actors.member, filename="later.jsonl", path=path, role="prompt_pairs"
    )
    assert run_job(dataset.job_id).status == "failed"
    page = client_as(actors.viewer).get(reverse("dataset-list", kwargs={"org_slug": actors.org.slug})).content.decode()
    assert "Refused uploads" in page and "later.jsonl" in page and "line 30" in page


# --- Splits ---------------------------------------------------------------------------------------------


def test_splits_are_deterministic_and_respect_the_ratio(actors, api_as, transactional_db):
    api = api_as(actors.member)
    upload_id = upload_bytes(
        api, actors.org, actors.project, "".join(f"document number {i}\n" for i in range(5000)).encode(), "docs.txt"
    )
    body = create_dataset(api, actors.org, upload_id).json()
    assert run_job(body["job"]).status == "succeeded"
    url = f"/api/v1/orgs/{actors.org.slug}/datasets/{body['id']}/"
    first = api.post(f"{url}split/", {"ratio": 0.8, "seed": 7}, format="json")
    assert first.status_code == 200, first.content
    split = first.json()["split"]
    assert split == {"ratio": 0.8, "seed": 7, "train": split["train"], "eval": 5000 - split["train"]}
    assert abs(split["train"] / 5000 - 0.8) <= 0.02
    assert api.post(f"{url}split/", {"ratio": 0.8, "seed": 7}, format="json").json()["split"] == split
    documents = blobs.local_path(Dataset.objects.get(pk=body["id"]).documents_blob)
    train_7 = {r["id"] for r in read_documents(documents, split="train", seed=7, ratio=0.8)}
    train_8 = {r["id"] for r in read_documents(documents, split="train", seed=8, ratio=0.8)}
    assert len(train_7) == split["train"] and train_7 != train_8
    assert train_7 == {i for i in range(5000) if split_of(7, 0.8, i) == "train"}
    response = api.post(f"{url}split/", {"ratio": 1.5, "seed": 7}, format="json")
    assert response.status_code == 400


# --- Token counts ------------------------------------------------------------------------------------------


def test_counting_tokens_needs_a_tokenizer(actors, api_as, transactional_db):
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, b"some text\n", "t.txt")
    body = create_dataset(api, actors.org, upload_id).json()
    url = f"/api/v1/orgs/{actors.org.slug}/datasets/{body['id']}/count_tokens/"
    response = api.post(url, {}, format="json")
    assert response.status_code == 409 and "once it is ready" in response.json()["error"]["message"]
    assert run_job(body["job"]).status == "succeeded"
    response = api.post(url, {}, format="json")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("No tokenizer is available in project Cardiology") and "never estimated" in message
    response = api.post(url, {"model": 999999}, format="json")
    assert response.status_code == 404
    assert not Job.objects.filter(kind="datasets.count_tokens").exists()


def test_counting_tokens_with_a_gguf_models_vocabulary(actors, api_as, tmp_path, transactional_db):
    """llama.cpp tokenizes with the vocabulary inside the GGUF; the counts equal the same
    vocabulary's tokenizer.json."""
    from projects.engine.datasets import HuggingFaceTokenizer
    from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama, write_tokenizer_files

    api = api_as(actors.member)
    text = b"hello world\nthe cat sat on the mat\n"
    body = create_dataset(api, actors.org, upload_bytes(api, actors.org, actors.project, text, "t.txt")).json()
    assert run_job(body["job"]).status == "succeeded"
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", TinyLlamaConfig())
    model = LanguageModel.objects.create(
        organization=actors.org, project=actors.project, name="teacher", format="gguf", status="ready"
    )
    ModelFile.objects.create(model=model, path="tiny.gguf", blob=blobs.store_path(gguf))
    response = api.post(
        f"/api/v1/orgs/{actors.org.slug}/datasets/{body['id']}/count_tokens/", {"model": model.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    assert run_job(response.json()["id"]).status == "succeeded"
    dataset = Dataset.objects.get(pk=body["id"])
    (tmp_path / "hf").mkdir()
    write_tokenizer_files(tmp_path / "hf", TinyLlamaConfig())
    expected = sum(
        HuggingFaceTokenizer(tmp_path / "hf" / "tokenizer.json").count(["hello world", "the cat sat on the mat"])
    )
    assert dataset.token_count == expected > 0
    assert "llama.cpp" in dataset.tokenizer


@pytest.mark.worker
def test_processing_and_token_counting_with_a_real_worker(actors, api_as, start_worker):
    worker = start_worker()
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/datasets/"
    upload_id = upload_bytes(api, actors.org, actors.project, jsonl(QA), "qa.jsonl")
    body = create_dataset(api, actors.org, upload_id, options={"template": "Q: {question} A: {answer}"}).json()
    job = wait_for_job(Job.objects.get(pk=body["job"]), lambda j: j.is_finished, worker=worker)
    assert job.status == "succeeded", job.error
    assert api.get(f"{base}{body['id']}/").json()["status"] == "ready"
    expected = sum(whitespace_pieces(f"Q: {r['question']} A: {r['answer']}") for r in QA)

    # An uploaded tokenizer.json ...
    tokenizer_upload = upload_bytes(api, actors.org, actors.project, tiny_tokenizer_json(), "tokenizer.json")
    response = api.post(f"{base}{body['id']}/count_tokens/", {"tokenizer_upload": tokenizer_upload}, format="json")
    assert response.status_code == 201, response.content
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]), lambda j: j.is_finished, worker=worker)
    assert job.status == "succeeded", job.error
    detail = api.get(f"{base}{body['id']}/").json()
    assert detail["token_count"] == expected
    assert "uploaded tokenizer.json" in detail["tokenizer"] and "WordLevel" in detail["tokenizer"]
    assert detail["stats"]["tokens"]["total"] == expected and detail["stats"]["tokens"]["count"] == 120

    # ... or a model of the project with a tokenizer.json (the default when none is named).
    model = LanguageModel.objects.create(
        organization=actors.org, project=actors.project, name="teacher", format="safetensors", status="ready"
    )
    ModelFile.objects.create(model=model, path="tokenizer.json", blob=Upload.objects.get(pk=tokenizer_upload).blob)
    response = api.post(f"{base}{body['id']}/count_tokens/", {}, format="json")
    assert response.status_code == 201, response.content
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]), lambda j: j.is_finished, worker=worker)
    assert job.status == "succeeded", job.error
    detail = api.get(f"{base}{body['id']}/").json()
    assert detail["token_count"] == expected and f"model “teacher” (#{model.pk})" in detail["tokenizer"]


@pytest.mark.worker
def test_a_refusal_in_the_worker_fails_the_job_and_keeps_nothing(actors, api_as, start_worker, settings, monkeypatch):
    monkeypatch.setenv("DATASET_MAX_UNCOMPRESSED_BYTES", str(1024 * 1024))  # read by the worker at start
    monkeypatch.setenv("DATASET_MAX_DOCUMENT_CHARS", str(100 * 1024 * 1024))
    worker = start_worker()
    api = api_as(actors.member)
    upload_id = upload_bytes(
        api, actors.org, actors.project, zeros_zip(50 * 1024 * 1024, declare=1000, before=25), "liar.zip"
    )
    body = create_dataset(api, actors.org, upload_id).json()
    job = wait_for_job(Job.objects.get(pk=body["job"]), lambda j: j.is_finished, worker=worker)
    assert job.status == "failed" and "inflates past the limit of 1,048,576 bytes" in job.error
    assert_nothing_kept(settings)


# --- Deleting, roles, tenancy ---------------------------------------------------------------------------------


def test_deleting_a_dataset_frees_its_blobs_for_garbage_collection(actors, api_as, transactional_db, settings):
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, b"one\ntwo\n", "t.txt")
    body = create_dataset(api, actors.org, upload_id).json()
    assert run_job(body["job"]).status == "succeeded"
    assert Blob.objects.count() == 2  # the upload and its normalised documents
    assert api.delete(f"/api/v1/orgs/{actors.org.slug}/datasets/{body['id']}/").status_code == 204
    assert not Dataset.objects.exists()
    blobs.collect_garbage()
    assert Blob.objects.count() == 0 and stored_files(settings) == []


def test_viewer_reads_but_cannot_write(actors, api_as, client_as, transactional_db):
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, b"alpha\nbeta\n", "t.txt")
    body = create_dataset(api, actors.org, upload_id).json()
    run_job(body["job"])
    viewer = api_as(actors.viewer)
    base = f"/api/v1/orgs/{actors.org.slug}/datasets/"
    assert viewer.get(f"{base}{body['id']}/").status_code == 200
    assert viewer.get(f"{base}{body['id']}/preview/").status_code == 200
    other_upload = upload_bytes(api, actors.org, actors.project, b"gamma\n", "u.txt")
    assert create_dataset(viewer, actors.org, other_upload).status_code == 403
    assert viewer.post(f"{base}{body['id']}/split/", {"ratio": 0.5, "seed": 1}, format="json").status_code == 403
    assert viewer.post(f"{base}{body['id']}/count_tokens/", {}, format="json").status_code == 403
    assert viewer.delete(f"{base}{body['id']}/").status_code == 403
    client = client_as(actors.viewer)
    for action in ("split", "count-tokens", "delete"):
        url = reverse(
            "dataset-action", kwargs={"org_slug": actors.org.slug, "dataset_id": body["id"], "action": action}
        )
        assert client.post(url, {"ratio": "0.5", "seed": "1"}).status_code == 403
    page = client.get(
        reverse("dataset-detail", kwargs={"org_slug": actors.org.slug, "dataset_id": body["id"]})
    ).content.decode()
    assert "alpha" in page and "Delete dataset" not in page and "Set split" not in page
    assert Dataset.objects.get(pk=body["id"]).split_ratio == 0.9


def test_members_use_the_page_actions(actors, client_as, transactional_db, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("".join(f"line {i}\n" for i in range(200)), encoding="utf-8")
    dataset = dataset_actions.do_create_dataset_from_file(actors.project, actors.member, filename="t.txt", path=path)
    run_job(dataset.job_id)
    client = client_as(actors.member)

    def act(action, data=None):
        return client.post(
            reverse("dataset-action", kwargs={"org_slug": actors.org.slug, "dataset_id": dataset.pk, "action": action}),
            data or {},
        )

    assert act("split", {"ratio": "0.75", "seed": "11"}).status_code == 302
    dataset.refresh_from_db()
    assert (dataset.split_ratio, dataset.split_seed, dataset.train_count + dataset.eval_count) == (0.75, 11, 200)
    response = act("count-tokens", {"source": ""})
    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("No tokenizer is available" in m for m in messages)
    assert act("delete").status_code == 302
    assert not Dataset.objects.filter(pk=dataset.pk).exists()


def test_outsiders_reach_no_dataset_and_no_upload(actors, api_as, client_as, transactional_db):
    api = api_as(actors.member)
    upload_id = upload_bytes(api, actors.org, actors.project, b"private\n", "t.txt")
    body = create_dataset(api, actors.org, upload_id).json()
    charlie = api_as(actors.outsider)
    assert charlie.get(f"/api/v1/orgs/{actors.org.slug}/datasets/{body['id']}/").status_code == 404
    assert charlie.get(f"/api/v1/orgs/{actors.other_org.slug}/datasets/{body['id']}/").status_code == 404
    assert charlie.get(f"/api/v1/orgs/{actors.other_org.slug}/datasets/").json()["results"] == []
    # An upload of Alice's named in Charlie's organisation: not found.
    theirs = upload_bytes(api, actors.org, actors.project, b"also private\n", "u.txt")
    assert create_dataset(charlie, actors.other_org, theirs).status_code == 404
    page = client_as(actors.outsider).get(
        reverse("dataset-detail", kwargs={"org_slug": actors.other_org.slug, "dataset_id": body["id"]})
    )
    assert page.status_code == 404


# --- Demo data --------------------------------------------------------------------------------------------------


def test_demo_datasets_load_once_and_read_cleanly(actors, transactional_db):
    first = dataset_actions.load_demo_datasets(actors.project, actors.owner)
    assert [d.role for d in first] == ["domain", "control", "prompt_pairs"]
    assert dataset_actions.load_demo_datasets(actors.project, actors.owner) == first  # idempotent
    assert Dataset.objects.count() == 3 and not Upload.objects.exists()
    for dataset in first:
        job = run_job(dataset.job_id)
        assert job.status == "succeeded", job.error
    domain, control, pairs = (Dataset.objects.get(pk=d.pk) for d in first)
    assert domain.document_count == 2316 and domain.preview[0]["text"].startswith("Question: ")
    assert "\nAnswer: " in domain.preview[0]["text"]
    assert control.document_count == 79 and pairs.document_count == 40
    demo = dataset_actions.DEMO_DIR
    assert sum(p.stat().st_size for p in demo.iterdir()) < 5 * 1024 * 1024
    assert (demo / "ATTRIBUTION.md").exists() and (demo / "MedQuAD-LICENSE.txt").exists()


def test_creating_in_an_archived_project_or_with_a_duplicate_name_is_refused(actors, transactional_db, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("x\n", encoding="utf-8")
    dataset_actions.do_create_dataset_from_file(actors.project, actors.member, filename="t.txt", path=path, name="Same")
    with pytest.raises(ActionError, match="already has a dataset called “Same”"):
        dataset_actions.do_create_dataset_from_file(
            actors.project, actors.member, filename="t.txt", path=path, name="Same"
        )
    assert Upload.objects.count() == 0 and Blob.objects.count() == 1
    from projects.actions import do_archive_project

    do_archive_project(actors.project)
    with pytest.raises(ActionError, match="archived"):
        dataset_actions.do_create_dataset_from_file(
            actors.project, actors.member, filename="t.txt", path=path, name="Other"
        )


def test_a_cancelled_processing_job_leaves_the_dataset_failed_and_retryable(actors, api_as, db):
    from projects.actions import do_cancel_job

    api = api_as(actors.member)
    body = create_dataset(api, actors.org, upload_bytes(api, actors.org, actors.project, b"text\n", "t.txt")).json()
    do_cancel_job(Job.objects.get(pk=body["job"]))
    detail = api.get(f"/api/v1/orgs/{actors.org.slug}/datasets/{body['id']}/").json()
    assert detail["status"] == "failed" and f"job #{body['job']}; retry it from the job page" in detail["error"]
    assert Blob.objects.count() == 1  # the upload is kept for the retry


def test_a_large_form_upload_is_streamed_from_a_temporary_file(actors, client_as, transactional_db, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # Django spools bigger files to disk
    data = "".join(f"line {i}: " + "lorem ipsum " * 8 + "\n" for i in range(4000)).encode()
    response = client_as(actors.member).post(
        reverse("dataset-create", kwargs={"org_slug": actors.org.slug}),
        {
            "project": actors.project.slug,
            "file": SimpleUploadedFile("big.txt", data),
            "role": "control",
            "split_ratio": "0.9",
            "split_seed": "0",
        },
    )
    assert response.status_code == 302
    dataset = Dataset.objects.get(name="big")
    assert dataset.source_blob.size == len(data) and not Upload.objects.exists()
    assert run_job(dataset.job_id).status == "succeeded"
    dataset.refresh_from_db()
    assert dataset.document_count == 4000
