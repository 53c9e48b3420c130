"""Uploading a model in a real browser: static/js/uploader.js against a live server.

The server is started with small chunks (UPLOAD_CHUNK_BYTES), so the tiny GGUF (~164 KiB)
travels in several chunks and the resume paths have something to resume. Failures are
made with Playwright's request routing: a chunk aborted before it reaches the server, a
chunk whose answer is lost after the server stored it, a page reloaded mid-upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from projects.models import Blob, LanguageModel, Upload
from tests.e2e.conftest import log_in, screenshot
from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama, write_hf_llama

pytestmark = pytest.mark.e2e

CHUNK = 32 * 1024
CONFIG = TinyLlamaConfig(n_layers=3)
INVENTORY_TIMEOUT = 40.0  # s: worker start (Django set-up) plus the inventory job
UPLOAD_PUT = re.compile(r"/api/v1/orgs/[^/]+/uploads/[0-9a-f-]{36}/$")


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setenv("UPLOAD_CHUNK_BYTES", str(CHUNK))


@pytest.fixture
def asgi_server(small_chunks, asgi_server):
    """The server of tests/e2e/conftest.py, started with UPLOAD_CHUNK_BYTES set (it passes os.environ)."""
    return asgi_server


@pytest.fixture
def gguf(tmp_path) -> Path:
    path = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG, tensor_type="Q8_0")
    assert path.stat().st_size > 4 * CHUNK
    return path


def chunk_count(path: Path) -> int:
    return -(-path.stat().st_size // CHUNK)


def record_progress(page: Page) -> None:
    """Keep every value of the upload bar and status line in sessionStorage (it outlives the page)."""
    page.evaluate("""() => {
        sessionStorage.removeItem('progress');
        const bar = document.querySelector('[data-upload-progress] .progress');
        const status = document.querySelector('[data-upload-status]');
        const seen = [];
        const note = () => {
            seen.push([Number(bar.getAttribute('aria-valuenow')), status.textContent]);
            sessionStorage.setItem('progress', JSON.stringify(seen));
        };
        new MutationObserver(note).observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
        new MutationObserver(note).observe(status, {childList: true, characterData: true, subtree: true});
    }""")


def recorded_progress(page: Page) -> list[tuple[int, str]]:
    return [tuple(x) for x in json.loads(page.evaluate("sessionStorage.getItem('progress') || '[]'"))]


def open_upload_form(page: Page, org_slug: str) -> None:
    log_in(page, "bob")
    page.goto(f"/o/{org_slug}/models/")
    expect(page.get_by_role("heading", name="Upload a model")).to_be_visible()


def choose_and_send(page: Page, project, path: Path, name: str) -> None:
    page.locator("#upload-project").select_option(project.slug)
    page.locator("#upload-name").fill(name)
    page.locator("#upload-files").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()


def expect_model_page(page: Page, org_slug: str, name: str) -> int:
    expect(page).to_have_url(re.compile(rf"/o/{org_slug}/models/\d+/$"), timeout=20_000)
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    return int(re.search(r"/models/(\d+)/$", page.url).group(1))


def model_json(page: Page, org_slug: str, model_id: int) -> dict:
    response = page.request.get(f"/api/v1/orgs/{org_slug}/models/{model_id}/")
    assert response.ok, response.text()
    return response.json()


@pytest.mark.worker
def test_upload_a_gguf_and_see_its_layers(page: Page, actors, gguf, start_worker):
    open_upload_form(page, actors.org.slug)
    # Throttle the upload (about 1.5 s for the file), so that speed and time left show.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 110_000},
    )
    record_progress(page)
    puts = []
    page.on("request", lambda r: r.method == "PUT" and UPLOAD_PUT.search(r.url) and puts.append(r.headers))
    choose_and_send(page, actors.project, gguf, "Tiny teacher")
    expect(page.get_by_role("button", name="Upload")).to_be_disabled()

    model_id = expect_model_page(page, actors.org.slug, "Tiny teacher")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    progress = recorded_progress(page)
    percents = [p for p, _ in progress]
    assert percents == sorted(percents) and percents[-1] == 100, progress
    assert len(set(percents)) >= chunk_count(gguf), progress  # it moved in steps, not at once
    texts = [t for _, t in progress]
    assert any(t.startswith("Sending tiny.gguf") for t in texts), texts
    assert any(re.search(r"\d+ % · \d+\.\d MB/s · about \d+ s left$", t) for t in texts), texts
    assert "Checking tiny.gguf · 100 %" in texts and "Creating the model · 100 %" in texts, texts
    # Every chunk went with its SHA-256 (127.0.0.1 is a secure context: WebCrypto is there).
    data = gguf.read_bytes()
    assert len(puts) == chunk_count(gguf)
    for headers in puts:
        start, end, total = map(int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"]).groups())
        assert total == len(data) and end - start + 1 <= CHUNK
        assert headers["x-chunk-sha256"] == hashlib.sha256(data[start : end + 1]).hexdigest()

    badge = page.locator("h1 .badge")
    expect(badge).to_have_text("Importing")
    start_worker()
    deadline = time.monotonic() + INVENTORY_TIMEOUT
    while badge.inner_text() != "Ready":
        assert badge.inner_text() == "Importing", page.locator("[role=alert]").all_inner_texts()
        assert time.monotonic() < deadline, "the inventory did not finish"
        page.wait_for_timeout(500)
        page.reload()
    rows = page.locator("table.layers tbody tr")
    expect(rows).to_have_count(CONFIG.n_layers)
    expect(rows.first.locator("td").first).to_have_text("0")
    files = page.locator("table").filter(has=page.get_by_role("columnheader", name="SHA-256"))
    expect(files.get_by_role("row").nth(1)).to_contain_text("tiny.gguf")
    assert model_json(page, actors.org.slug, model_id)["files"] == [
        {"path": "tiny.gguf", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    ]
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('hartonomous.upload:'))") == []
    screenshot(page, "model-page.png")


def test_lost_chunks_are_resumed_from_the_servers_offset(page: Page, new_page, actors, gguf):
    """The 2nd PUT (chunk 2) never reaches the server; the 4th (chunk 3) does, but its answer is lost.

    The client must send chunk 2 again, and after chunk 3 ask the server (GET) where it
    stands and go on with chunk 4: the server's part file is the truth.
    """
    data = gguf.read_bytes()
    events: list[tuple[str, str, int | None]] = []  # (what, content-range, offset the server answered)
    puts = {"count": 0}

    def chunk_route(route):
        request = route.request
        if request.method != "PUT":
            route.continue_()
            return
        puts["count"] += 1
        content_range = request.headers["content-range"]
        if puts["count"] == 2:
            events.append(("aborted before the server", content_range, None))
            new_page.problems.excuse_failed_load(request.url)  # Chromium logs it; uploader.js copes
            route.abort("connectionreset")
        elif puts["count"] == 4:
            response = route.fetch()
            events.append(
                ("stored, answer lost", content_range, response.json()["offset"] if response.ok else response.status)
            )
            new_page.problems.excuse_failed_load(request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    open_upload_form(page, actors.org.slug)
    page.route(UPLOAD_PUT, chunk_route)
    answered, gets = [], []
    page.on(
        "response",
        lambda r: (
            r.request.method == "PUT"
            and UPLOAD_PUT.search(r.url)
            and answered.append(("answered", r.request.headers["content-range"], r.status, r.json().get("offset")))
        ),
    )
    page.on("request", lambda r: r.method == "GET" and UPLOAD_PUT.search(r.url) and gets.append(r.url))
    record_progress(page)
    choose_and_send(page, actors.project, gguf, "Resumed teacher")
    model_id = expect_model_page(page, actors.org.slug, "Resumed teacher")

    def range_of(index: int) -> str:
        start = index * CHUNK
        return f"bytes {start}-{min(start + CHUNK, len(data)) - 1}/{len(data)}"

    n = chunk_count(gguf)
    assert events == [("aborted before the server", range_of(1), None), ("stored, answer lost", range_of(2), 3 * CHUNK)]
    # What the server stored, in order: every chunk once, from the right offset; chunk 2
    # (index 1) again after its abort; after the lost answer the client went on with the next.
    stored = [r for _, r, status, _ in answered if status == 200]
    stored.insert(2, range_of(2))  # stored by route.fetch(), its answer never reached the page
    assert stored == [range_of(i) for i in range(n)], answered
    assert all(status == 200 for _, _, status, _ in answered), answered  # no 409: it asked first
    assert len(gets) == 2  # one GET of the offset after each failure
    texts = [t for _, t in recorded_progress(page)]
    assert any(t.startswith("Connection problem (network error); trying again in 1 s") for t in texts), texts

    sha = hashlib.sha256(data).hexdigest()
    assert model_json(page, actors.org.slug, model_id)["files"][0]["sha256"] == sha
    files = page.locator("table").filter(has=page.get_by_role("columnheader", name="SHA-256"))
    expect(files.locator("code")).to_have_text(sha[:19] + "…")


def test_reloaded_page_resumes_the_remembered_upload(page: Page, actors, gguf):
    """The tab is reloaded mid-upload; choosing the same file again goes on where it stopped."""
    data = gguf.read_bytes()
    held = []

    def hold_third_chunk(route):
        if (
            not held
            and route.request.method == "PUT"
            and route.request.headers["content-range"].startswith(f"bytes {2 * CHUNK}-")
        ):
            held.append(route)  # never answered, never sent on: the page is reloaded while it waits
            return
        route.continue_()

    open_upload_form(page, actors.org.slug)
    page.route(UPLOAD_PUT, hold_third_chunk)
    choose_and_send(page, actors.project, gguf, "Reloaded teacher")
    page.wait_for_function(
        "() => document.querySelector('[data-upload-progress] .progress').getAttribute('aria-valuenow') !== '0'"
    )
    expect(page.locator("[data-upload-status]")).to_contain_text("Sending tiny.gguf")
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the third chunk was never sent"
        page.wait_for_timeout(50)
    upload = Upload.objects.get()
    assert upload.received == 2 * CHUNK
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", str(100 * 2 * CHUNK // len(data)))
    screenshot(page, "model-upload-progress.png")
    remembered = page.evaluate("Object.entries(localStorage).filter(([k]) => k.startsWith('hartonomous.upload:'))")
    assert [value for _, value in remembered] == [str(upload.pk)]

    # Leaving mid-upload asks first (beforeunload); accept and reload.
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
    page.reload()
    assert dialogs == ["beforeunload"]
    expect(page.locator("[data-upload-progress]")).to_be_hidden()
    upload.refresh_from_db()
    assert upload.received == 2 * CHUNK  # the held chunk never arrived

    requests = []
    page.on("request", lambda r: (UPLOAD_PUT.search(r.url) or r.url.endswith("/uploads/")) and requests.append(r))
    choose_and_send(page, actors.project, gguf, "Reloaded teacher")
    model_id = expect_model_page(page, actors.org.slug, "Reloaded teacher")
    # No new upload was opened: the remembered one was asked for its offset and continued.
    assert [r.method for r in requests if r.url.endswith("/uploads/")] == []
    assert requests[0].method == "GET" and requests[0].url.endswith(f"/uploads/{upload.pk}/")
    first_put = next(r for r in requests if r.method == "PUT")
    assert first_put.headers["content-range"].startswith(f"bytes {2 * CHUNK}-")
    assert sum(r.method == "PUT" for r in requests) == chunk_count(gguf) - 2
    assert model_json(page, actors.org.slug, model_id)["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('hartonomous.upload:'))") == []


def test_refused_file_shows_the_servers_message_and_keeps_nothing(page: Page, new_page, actors, tmp_path, settings):
    path = tmp_path / "model.bin"
    content = pickle.dumps({"weights": list(range(30_000))})  # ~150 KB: several chunks
    path.write_bytes(content)
    assert len(content) > 2 * CHUNK
    opened = []
    page.on(
        "response",
        lambda r: r.request.method == "POST" and r.url.endswith("/uploads/") and opened.append(r.json()["id"]),
    )
    model_posts = []

    def on_model_post(response):
        if response.request.method == "POST" and response.url.endswith("/models/"):
            model_posts.append(response.status)
            if response.status == 400:  # the refusal is the point: excuse Chromium's console line
                new_page.problems.excuse_failed_load(response.url)

    page.on("response", on_model_post)

    open_upload_form(page, actors.org.slug)
    choose_and_send(page, actors.project, path, "Pickled")
    error = page.locator("[data-upload-error]")
    expect(error).to_be_visible(timeout=20_000)
    expect(error).to_contain_text("model.bin")
    expect(error).to_contain_text("pickle")
    assert model_posts == [400]
    expect(page.get_by_role("button", name="Upload")).to_be_enabled()
    expect(page.locator("[data-upload-progress]")).to_be_hidden()  # nothing was kept: no bar at 100 %
    expect(page).to_have_url(re.compile(rf"/o/{actors.org.slug}/models/$"))
    screenshot(page, "model-upload-refused.png")

    sha = hashlib.sha256(content).hexdigest()
    assert len(opened) == 1
    assert not LanguageModel.objects.exists()
    assert not Upload.objects.exists()
    assert not Blob.objects.filter(pk=sha).exists()
    assert not (Path(settings.MEDIA_ROOT) / Blob.name_for(sha)).exists()  # the server's too (conftest)
    assert not (Path(os.environ["DATA_DIR"]) / "uploads" / f"{opened[0]}.part").exists()
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('hartonomous.upload:'))") == []


def test_folder_upload_keeps_the_paths_inside_the_folder(page: Page, actors, tmp_path):
    """A Hugging Face folder chosen with the folder input: every file, under its path in the folder."""
    folder = write_hf_llama(tmp_path / "tiny-hf", CONFIG, shards=2)
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # hidden: not part of the model
    expected = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    opened = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/uploads/") and opened.append(r.post_data_json))

    open_upload_form(page, actors.org.slug)
    page.locator("#upload-project").select_option(actors.project.slug)
    page.locator("#upload-name").fill("Tiny HF")
    page.locator("#upload-folder").set_input_files(str(folder))
    page.get_by_role("button", name="Upload").click()
    model_id = expect_model_page(page, actors.org.slug, "Tiny HF")

    assert sorted(o["relative_path"] for o in opened) == expected  # the top folder's name is dropped
    body = model_json(page, actors.org.slug, model_id)
    assert body["format"] == "safetensors"
    assert sorted(f["path"] for f in body["files"]) == expected
    for f in body["files"]:
        assert f["sha256"] == hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest()
