"""Raw request bodies streamed to the view (hartonomous_web/streamed_body.py).

The unit tests drive a StreamedBody from a real event loop on a thread of its own, with an
ASGI ``receive`` fed by the test; the last tests send upload chunks to a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import socket
import threading
import time

import pytest

from hartonomous_web.streamed_body import StreamedBody, streams_raw_body
from projects import actions as project_actions
from tests.support.live_server import AsgiServer


class Loop:
    """An event loop on its own thread, and an ASGI receive the test feeds message by message."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.queue: asyncio.Queue = self.call(asyncio.Queue)
        self.taken = 0  # messages the body took from receive
        self.bodies: list[StreamedBody] = []

    def call(self, fn, *args):
        done = threading.Event()
        box = {}

        def run():
            try:
                box["value"] = fn(*args)
            except BaseException as error:  # handed to the test's thread
                box["error"] = error
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)
        if "error" in box:
            raise box["error"]
        return box["value"]

    async def receive(self):
        message = await self.queue.get()
        self.taken += 1
        return message

    def send(self, body: bytes = b"", more: bool = True) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, {"type": "http.request", "body": body, "more_body": more})

    def disconnect(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, {"type": "http.disconnect"})

    def body(self, **options) -> StreamedBody:
        body = self.call(lambda: StreamedBody(self.receive, self.loop, **options))
        self.bodies.append(body)
        return body

    def close(self) -> None:
        for body in self.bodies:
            body.close()  # cancels its pump
        time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop():
    running = Loop()
    yield running
    running.close()


def test_only_raw_bodies_are_streamed():
    def scope(method, content_type):
        return {"method": method, "headers": [(b"content-type", content_type)]}

    assert streams_raw_body(scope("PUT", b"application/octet-stream"))
    assert streams_raw_body(scope("POST", b"Application/Octet-Stream; charset=binary"))
    assert not streams_raw_body(scope("POST", b"application/json"))
    assert not streams_raw_body(scope("POST", b"multipart/form-data; boundary=x"))
    assert not streams_raw_body(scope("GET", b"application/octet-stream"))
    assert not streams_raw_body({"method": "PUT", "headers": []})


def test_the_view_reads_every_byte_in_order_and_never_more_than_asked(loop):
    pieces = [bytes([i]) * (1000 + 37 * i) for i in range(40)]
    body = loop.body(read_ahead=10_000)
    for piece in pieces[:-1]:
        loop.send(piece)
    loop.send(pieces[-1], more=False)
    got = []
    while chunk := body.read(4096):
        assert len(chunk) <= 4096
        got.append(chunk)
    assert b"".join(got) == b"".join(pieces)
    assert body.read(10) == b""  # the end stays the end


def test_readinto_fills_the_callers_buffer_across_pieces_and_mixes_with_read(loop):
    pieces = [bytes([i]) * (700 + 91 * i) for i in range(30)]
    body = loop.body(read_ahead=8_000)
    for piece in pieces[:-1]:
        loop.send(piece)
    loop.send(pieces[-1], more=False)
    buffer = bytearray(3000)
    got = []
    while True:
        # readinto and read take turns: a piece split by one is continued by the other.
        count = body.readinto(memoryview(buffer)[:2500])
        if not count:
            break
        got.append(bytes(buffer[:count]))
        assert count <= 2500
        got.append(body.read(333))
    assert b"".join(got) == b"".join(pieces)
    assert body.readinto(buffer) == 0


def test_the_event_loop_receives_no_further_ahead_than_its_buffer(loop):
    body = loop.body(read_ahead=5000)
    for _ in range(20):
        loop.send(b"x" * 1000)
    time.sleep(0.3)
    assert loop.taken == 0  # nothing is received before the view first reads
    assert len(body.read(1000)) == 1000
    time.sleep(0.3)
    assert loop.taken == 6  # 5,000 bytes buffered after the first read: the pump waits for the reader
    assert len(body.read(3000)) == 3000
    time.sleep(0.3)
    assert loop.taken == 9  # room for 3,000 more, and no more than that


def test_a_client_that_goes_away_ends_the_body_early(loop):
    body = loop.body()
    loop.send(b"a" * 300)
    loop.disconnect()
    assert body.read(1000) == b"a" * 300
    assert body.read(1000) == b""
    message = asyncio.run_coroutine_threadsafe(body.receive_after_body(), loop.loop).result(5)
    assert message == {"type": "http.disconnect"}


def test_a_client_that_stalls_counts_as_gone(loop):
    body = loop.body(stall_seconds=0.3)
    loop.send(b"b" * 100)
    assert body.read(100) == b"b" * 100
    started = time.monotonic()
    assert body.read(100) == b""  # nothing for 0.3 s: the end, not a wait forever
    assert time.monotonic() - started < 5


def test_the_event_loop_thread_cannot_block_on_the_body(loop):
    body = loop.body()
    with pytest.raises(RuntimeError, match="event loop"):
        loop.call(lambda: body.read(10))


# --- Through a real server --------------------------------------------------------------------


@pytest.fixture
def server(transactional_db, isolated_media, settings):
    live = AsgiServer()
    try:
        live.wait_until_healthy()
        yield live
    finally:
        live.stop()


def start_upload(server, token, org, project, size) -> str:
    base = f"/api/v1/orgs/{org.slug}/uploads/"
    status, created = call(
        server,
        token,
        "POST",
        base,
        json.dumps({"project": project.slug, "filename": "big.gguf", "size": size}),
        {"Content-Type": "application/json"},
    )
    assert status == 201, created
    return f"{base}{created['id']}/"


def call(server, token, method, path, body=b"", headers=None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def test_a_chunk_dropped_mid_body_keeps_what_arrived_and_the_upload_resumes(server, actors):
    _, token = project_actions.do_create_token(actors.org, actors.member, "stream test")
    data = hashlib.sha256(b"seed").digest() * (6 * 1024 * 1024 // 32)  # 6 MiB
    url = start_upload(server, token, actors.org, actors.project, len(data))
    # One chunk for the whole file, of which the client sends 2.5 MiB, then goes away.
    sent = 5 * 1024 * 1024 // 2
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall(
        f"PUT {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Range: bytes 0-{len(data) - 1}/{len(data)}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data[:sent]
    )
    time.sleep(1.0)  # the server has received it all (it reads up to 16 MiB ahead of the view)
    raw.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, upload = call(server, token, "GET", url)
        assert status == 200
        if upload["offset"] == sent:
            break
        time.sleep(0.1)
    assert upload["offset"] == sent and upload["status"] == "receiving"
    rest = data[sent:]
    status, answer = call(
        server,
        token,
        "PUT",
        url,
        rest,
        {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {sent}-{len(data) - 1}/{len(data)}",
            "X-Chunk-SHA256": hashlib.sha256(rest).hexdigest(),
        },
    )
    assert status == 200, answer
    assert answer["offset"] == len(data)
    status, done = call(server, token, "POST", f"{url}complete/")
    assert status == 200, done
    assert done["status"] == "complete" and done["blob_sha256"] == hashlib.sha256(data).hexdigest()
    assert "Traceback" not in server.log()


def test_a_refused_chunk_is_answered_without_reading_it_and_the_connection_goes_on(server, actors):
    _, token = project_actions.do_create_token(actors.org, actors.member, "stream test")
    data = b"z" * (3 * 1024 * 1024)
    url = start_upload(server, token, actors.org, actors.project, 2 * len(data))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    # Starts at the wrong offset: 409 with where to resume, and the same connection serves the next request.
    connection.request(
        "PUT",
        url,
        body=data,
        headers={**headers, "Content-Range": f"bytes {len(data)}-{2 * len(data) - 1}/{2 * len(data)}"},
    )
    response = connection.getresponse()
    assert response.status == 409
    assert json.loads(response.read())["error"]["offset"] == 0
    connection.request(
        "PUT", url, body=data, headers={**headers, "Content-Range": f"bytes 0-{len(data) - 1}/{2 * len(data)}"}
    )
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["offset"] == len(data)
    # Another organisation's member gets a 404 for the same upload, body and all.
    _, outsider = project_actions.do_create_token(actors.other_org, actors.outsider, "stream test")
    status, _ = call(
        server,
        outsider,
        "PUT",
        url,
        data,
        {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {len(data)}-{2 * len(data) - 1}/{2 * len(data)}",
        },
    )
    assert status == 404
    assert "Traceback" not in server.log()
