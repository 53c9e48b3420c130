"""HTTP requests on long-lived threads, each handled in one call there (hartonomous_web/request_threads.py).

The ASGI application is driven in-process with asyncio: a scope, a ``receive`` that hands
over an empty body, and a ``send`` that collects the response.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from pathlib import Path

import pytest
from django.core import signals

from hartonomous_web.asgi import application
from hartonomous_web.request_threads import ON_REQUEST_THREAD, RequestThreads

ROOT = Path(__file__).resolve().parent.parent.parent


def scope_for(path: str, method: str = "GET", headers=()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def call(app, scope: dict) -> dict:
    """Send one request with an empty body; the status, headers and whole body that came back."""
    done = asyncio.Event()
    out = {"body": b"", "more_messages": 0}
    first = [True]

    async def receive():
        if first[0]:
            first[0] = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")
            out["more_messages"] += 1
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    return out


@pytest.fixture
def signal_threads():
    """The thread names on which request_started and request_finished ran."""
    seen = {"started": [], "finished": []}

    def started(**kwargs):
        seen["started"].append(threading.current_thread().name)

    def finished(**kwargs):
        seen["finished"].append(threading.current_thread().name)

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


@pytest.mark.django_db(transaction=True)
def test_a_page_request_runs_start_to_finish_on_one_request_thread(signal_threads):
    response = asyncio.run(call(application, scope_for("/healthz")))
    assert response["status"] == 200 and b'"ok"' in response["body"]
    # Both signals (and middleware and view between them) ran on the same long-lived thread.
    assert signal_threads["started"] == signal_threads["finished"]
    assert len(signal_threads["started"]) == 1 and signal_threads["started"][0].startswith("http-")


@pytest.mark.django_db(transaction=True)
def test_a_streamed_file_response_is_read_piece_by_piece_and_closed_after_sending(signal_threads, monkeypatch):
    # WhiteNoise answers static files with a streaming FileResponse, as downloads of model files
    # are answered: its content is read while sending (Django's own handler would read it all
    # into memory first, with a warning), and it is closed after the last byte.
    expected = (ROOT / "static" / "css" / "app.css").read_bytes()
    piece = 1024
    assert len(expected) > 3 * piece
    monkeypatch.setattr(application.application_mapping["http"].app, "stream_piece_bytes", piece)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "must consume synchronous iterators" would fail the test
        response = asyncio.run(call(application, scope_for("/static/css/app.css")))
    assert response["status"] == 200
    assert response["body"] == expected
    assert response["more_messages"] >= len(expected) // piece  # sent as it was read, not in one go
    assert len(signal_threads["finished"]) == 1 and signal_threads["finished"][0].startswith("http-")


@pytest.mark.django_db(transaction=True)
def test_errors_are_answered_by_the_same_middleware(actors):
    # An anonymous visitor is sent to the login page; an unknown organisation is a 404.
    response = asyncio.run(call(application, scope_for(f"/o/{actors.org.slug}/")))
    headers = {name.lower(): value for name, value in response["headers"].items()}
    assert response["status"] == 302 and headers[b"location"].startswith(b"/accounts/login/")
    response = asyncio.run(call(application, scope_for("/api/v1/orgs/nowhere/projects/")))
    assert response["status"] in (401, 403)  # no credentials: DRF's answer, in its JSON error body
    assert b"detail" in response["body"] or b"error" in response["body"]


def run_concurrently(paths: list[str], seconds: float, *, size: int = 2, handoff: float = 0.05) -> dict:
    """Requests to ``paths`` at once through RequestThreads, each taking ``seconds``."""
    seen = {"now": 0, "most": 0, "flags": []}

    async def app(scope, receive, send):
        seen["flags"].append((scope["path"], scope.get(ON_REQUEST_THREAD, False)))
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        await asyncio.sleep(seconds)
        seen["now"] -= 1

    async def main():
        threads = RequestThreads(app, size, handoff=handoff, unbounded_prefixes=("/v1/",))
        await asyncio.gather(*(threads(scope_for(path), None, None) for path in paths))

    asyncio.run(main())
    return seen


def test_quick_requests_run_one_at_a_time():
    seen = run_concurrently([f"/page/{i}" for i in range(6)], 0.005, size=4, handoff=0.2)
    assert seen["most"] == 1
    assert all(flag for _, flag in seen["flags"])


def test_a_slow_request_lets_the_next_start_after_the_handoff_and_no_more_than_size_run():
    seen = run_concurrently([f"/page/{i}" for i in range(6)], 0.2, size=2, handoff=0.02)
    assert seen["most"] == 2


def test_unbounded_paths_skip_the_slots():
    seen = run_concurrently([f"/v1/chat/{i}" for i in range(6)], 0.05, size=1)
    assert seen["most"] == 6
    assert not any(flag for _, flag in seen["flags"])


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least one thread"):
        RequestThreads(lambda *a: None, 0)
