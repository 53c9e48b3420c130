"""The web server's HTTP protocol: uvicorn's httptools protocol, with raw bodies handed over whole.

uvicorn gives an application a request body 64 KiB at a time: every piece the socket yields is
appended to one buffer, the connection stops reading once that buffer passes 64 KiB, and the
application's next ``receive()`` copies the buffer out and starts reading again. For an upload
chunk (hundreds of MiB) that is tens of thousands of pause/resume round trips through the event
loop, each with two copies of the bytes: the event loop's core was the upload's bottleneck.

For a request whose body is raw bytes (``streams_raw_body``: the bodies that
``streamed_body.StreamedBody`` streams to a view) :class:`HttpProtocol` keeps the pieces the
socket yields as they are, keeps reading until ``RAW_BODY_HIGH_WATER`` bytes wait, and
``receive()`` hands the pieces out one per message, without copying them. Every other request
(pages, forms, JSON, websockets) takes uvicorn's own path unchanged.

The server uses it through uvicorn's ``--http`` option (``scripts/run.sh``, ``docker/Dockerfile``,
the test server and the benchmarks): ``--http hartonomous_web.http_protocol:HttpProtocol``.
"""

from __future__ import annotations

from collections import deque

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from hartonomous_web.streamed_body import streams_raw_body

#: How many body bytes of one raw-body request may wait in the protocol before it stops reading.
RAW_BODY_HIGH_WATER = 4 * 1024 * 1024
#: Reading starts again once the application has taken the waiting bytes below this.
RAW_BODY_LOW_WATER = 1024 * 1024


class RawBodyCycle(RequestResponseCycle):
    """A request/response cycle whose body waits as the pieces the socket yielded."""

    pieces: deque
    pending: int

    def start_raw_body(self) -> None:
        self.pieces = deque()
        self.pending = 0

    def add_piece(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.pending += len(piece)
        if self.pending >= RAW_BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.message_event.set()

    async def receive(self):
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            if self.pending < RAW_BODY_LOW_WATER:
                self.flow.resume_reading()
            if not self.pieces:
                await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = b""
        if self.pieces:
            body = self.pieces.popleft()
            self.pending -= len(body)
        return {"type": "http.request", "body": body, "more_body": self.more_body or bool(self.pieces)}


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; raw request bodies go to the application in the pieces read."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # A cycle made for this request (not an upgrade, not uvicorn's own error path).
        if type(cycle) is RequestResponseCycle and cycle.scope is self.scope and streams_raw_body(self.scope):
            cycle.__class__ = RawBodyCycle
            cycle.start_raw_body()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not RawBodyCycle:
            return super().on_body(body)
        if cycle.response_complete:  # answered already (a 404, a wrong offset): the rest is dropped
            cycle.pieces.clear()
            cycle.pending = 0
            return
        cycle.add_piece(body)
