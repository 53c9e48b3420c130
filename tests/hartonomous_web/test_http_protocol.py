"""The web server's HTTP protocol (hartonomous_web/http_protocol.py) and the command that uses it.

The protocol runs on a real uvloop event loop over a real socket pair: the test writes raw HTTP
to one end, the protocol serves the other to a small ASGI application the test controls.
Uploads through the whole server with this protocol are covered by tests/hartonomous_web/test_streamed_body.py
and tests/projects/test_uploads.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
from pathlib import Path

import pytest
import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from hartonomous_web import http_protocol
from hartonomous_web.http_protocol import RAW_BODY_HIGH_WATER, HttpProtocol, RawBodyCycle
from hartonomous_web.server_command import APP, UVICORN_OPTIONS, uvicorn_command

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


class Served:
    """One connection served by HttpProtocol on a uvloop loop of its own thread."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.go = asyncio.Event()  # the application reads the body once the test sets it
        self.requests: list[dict] = []
        config = Config(app=self.app, http=HttpProtocol, interface="asgi3", lifespan="off", log_level="warning")
        config.load()
        self.client, server_end = socket.socketpair()
        self.client.settimeout(20)

        async def serve():
            return await self.loop.connect_accepted_socket(
                lambda: config.http_protocol_class(
                    config=config, server_state=ServerState(), app_state={}, _loop=self.loop
                ),
                server_end,
            )

        self.transport, self.protocol = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)

    async def app(self, scope, receive, send):
        record = {"path": scope["path"], "cycle": type(self.protocol.cycle), "pieces": []}
        self.requests.append(record)
        if scope["path"] == "/wait":
            await self.go.wait()
        while True:
            message = await receive()
            record["pieces"].append(len(message.get("body", b"")))
            record.setdefault("digest", hashlib.sha256()).update(message.get("body", b""))
            if not message.get("more_body"):
                break
        answer = json.dumps({"sha256": record["digest"].hexdigest(), "bytes": sum(record["pieces"])}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def on_loop(self, fn):
        async def call():
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def response(self) -> dict:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.client.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        while len(body) < length:
            body += self.client.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        return json.loads(body)

    def close(self) -> None:
        self.client.close()

        async def shut_down():
            self.transport.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served():
    connection = Served()
    yield connection
    connection.close()


def request(method: str, path: str, content_type: str, body: bytes) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_a_raw_body_is_read_ahead_to_the_high_water_mark_then_handed_over_whole(served):
    body = bytes(range(256)) * (48 * MIB // 256 // 4)  # 12 MiB
    sender = threading.Thread(
        target=served.client.sendall, args=(request("PUT", "/wait", "application/octet-stream", body),)
    )
    sender.start()
    # The application has not read yet: the connection keeps reading until the high-water mark
    # (uvicorn alone stops at 64 KiB), then stops.
    for _ in range(200):
        state = served.on_loop(lambda: (getattr(served.protocol.cycle, "pending", 0), served.transport.is_reading()))
        if state[0] >= RAW_BODY_HIGH_WATER and not state[1]:
            break
        threading.Event().wait(0.02)
    assert state[0] >= RAW_BODY_HIGH_WATER and not state[1], state
    assert state[0] < RAW_BODY_HIGH_WATER + MIB
    served.on_loop(served.go.set)
    answer = served.response()
    sender.join(10)
    assert answer == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    record = served.requests[0]
    assert record["cycle"] is RawBodyCycle
    # Pieces as the socket gave them, never coalesced or cut to 64 KiB; none is empty but the last.
    assert all(record["pieces"][:-1]) and max(record["pieces"]) <= RAW_BODY_HIGH_WATER


def test_other_bodies_take_uvicorns_own_path(served):
    body = json.dumps({"text": "x" * MIB}).encode()
    served.client.sendall(request("POST", "/json", "application/json", body))
    assert served.response() == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    assert served.requests[0]["cycle"] is RequestResponseCycle
    # And the connection goes on with a raw body after it.
    raw = b"\x00\x01" * 300_000
    served.on_loop(served.go.set)
    served.client.sendall(request("PUT", "/wait", "application/octet-stream; charset=binary", raw))
    assert served.response()["sha256"] == hashlib.sha256(raw).hexdigest()
    assert served.requests[1]["cycle"] is RawBodyCycle


def test_every_start_of_the_server_uses_the_same_options():
    """scripts/run.sh and docker/Dockerfile spell the command out; the rest build it from server_command."""
    options = " ".join(UVICORN_OPTIONS)
    for path in ("scripts/run.sh", "docker/Dockerfile"):
        text = (ROOT / path).read_text()
        assert re.search(rf"uvicorn --host \S+ --port \S+ {re.escape(options)} {re.escape(APP)}", text), path
    assert uvicorn_command("python", "127.0.0.1", 8000) == [
        "python",
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        *UVICORN_OPTIONS,
        APP,
    ]
    assert http_protocol.HttpProtocol.__module__ + ":HttpProtocol" == UVICORN_OPTIONS[-1]
