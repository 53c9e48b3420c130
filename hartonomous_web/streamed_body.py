"""Raw request bodies streamed to the view while they arrive, instead of spooled first.

Django's ASGI handler reads a request's whole body before the view runs: into memory up to
``FILE_UPLOAD_MAX_MEMORY_SIZE``, then into a temporary file. For an upload chunk (tens of MB)
that is every byte written to a temporary file and read back once more before the view can
start, and receiving, hashing and writing happen one after the other, on one core.

:class:`StreamingBodyHandler` serves requests whose body is raw bytes
(``Content-Type: application/octet-stream``: nothing Django would parse into ``POST`` or
``FILES``) with a :class:`StreamedBody` instead. The event loop keeps receiving the body into
a bounded read-ahead buffer (``READ_AHEAD`` bytes per request) while the view, on its request
thread, reads from it: receiving overlaps hashing and writing, and no byte touches the disk
twice. Nothing else changes: the same middleware, authentication, tenancy and view run, and a
view that answers without reading the body (a 404, a 409 for a wrong offset) leaves the rest
to the server, which discards it.

A client that goes away mid-body, or sends nothing for ``STALL_SECONDS``, ends the stream
early: the view reads fewer bytes than announced and keeps what arrived (an upload resumes
from there).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections import deque

from django.core.handlers.asgi import ASGIHandler

#: How far the event loop receives ahead of the view, per request (bounded memory).
READ_AHEAD = 16 * 1024 * 1024
#: A read returns once this much is buffered (or the body ended): few, large pieces.
MIN_READ = 1024 * 1024
#: A body that sends nothing for this long is treated as a dropped connection.
STALL_SECONDS = 60.0

RAW_TYPE = b"application/octet-stream"


def streams_raw_body(scope) -> bool:
    """Whether a request's body is raw bytes for the view to stream (see the module)."""
    if scope.get("method") not in ("PUT", "POST", "PATCH"):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == RAW_TYPE
    return False


class StreamedBody(io.RawIOBase):
    """A request body read by a request thread while the event loop is still receiving it.

    The event loop side (``_pump``) appends each ``http.request`` message's bytes; the
    reading side (any thread but the loop's) takes them. At most ``read_ahead`` bytes wait
    between the two: past that the pump stops receiving until the reader makes room.
    """

    def __init__(
        self,
        receive,
        loop: asyncio.AbstractEventLoop,
        read_ahead: int = READ_AHEAD,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        super().__init__()
        self._receive = receive
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the event loop's thread
        self._read_ahead = read_ahead
        self._stall_seconds = stall_seconds
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._waiting_for = 0  # bytes the reader waits for: it is woken once they are there
        self._ended = False  # no more bytes will come (last message, disconnect or close)
        self._disconnected = False
        self._room = asyncio.Event()
        self._done = asyncio.Event()
        # Receiving starts with the first read, not before: while the request's middleware,
        # authentication and view set up on their thread, an event loop busy taking in the body
        # would hold the interpreter lock (measured: 3 ms of setup took 17-27 ms beside it).
        self._pump_task: asyncio.Task | None = None
        self._pump_requested = False

    # --- event loop side ------------------------------------------------------------------

    async def _pump(self) -> None:
        try:
            while True:
                self._room.clear()
                if self._buffered >= self._read_ahead:
                    await self._room.wait()
                    continue
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._disconnected = True
                    return
                data = message.get("body", b"")
                more = message.get("more_body", False)
                with self._cond:
                    if data and not self._ended:
                        self._pieces.append(data)
                        self._buffered += len(data)
                    if not more:
                        self._ended = True
                    # Waking the reader for every piece (a few hundred KiB) only to let it wait
                    # again made the two threads fight over the interpreter lock.
                    if self._ended or self._buffered >= self._waiting_for:
                        self._cond.notify_all()
                if not more:
                    return
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._done.set()

    def _start_pump(self) -> None:
        if self._pump_task is None and not self._ended:
            self._pump_task = self._loop.create_task(self._pump())

    def _stop_pump(self) -> None:
        if self._pump_task is None:
            self._ended = True
            self._done.set()  # never started: nothing was taken from receive
        elif not self._pump_task.done():
            self._pump_task.cancel()

    async def receive_after_body(self):
        """The ``receive`` Django's handler listens on for a disconnect: it must not take body messages."""
        await self._done.wait()
        if self._disconnected:
            return {"type": "http.disconnect"}
        return await self._receive()

    # --- reading side ---------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left with -1); ``b""`` at the end of the body."""
        if size is None or size < 0:
            self._check_thread()
            return b"".join(iter(lambda: self.read(self._read_ahead), b""))
        taken = self._take(size)
        if len(taken) == 1 and type(taken[0]) is bytes:
            return taken[0]
        return b"".join(taken)

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` with up to its length in bytes, copied once from the pieces received; 0 at the end."""
        view = memoryview(buffer).cast("B")
        count = 0
        for piece in self._take(len(view)):
            view[count : count + len(piece)] = piece
            count += len(piece)
        return count

    def _check_thread(self) -> None:
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("A streamed request body cannot be read on the event loop's thread.")

    def _take(self, size: int) -> list:
        """The next pieces, ``size`` bytes at most, once ``MIN_READ`` bytes wait (or the body ended)."""
        self._check_thread()
        if size == 0:
            return []
        want = min(size, MIN_READ, self._read_ahead)
        with self._cond:
            if not self._pump_requested:
                self._pump_requested = True
                self._loop.call_soon_threadsafe(self._start_pump)
            waited_since = time.monotonic()
            while self._buffered < want and not self._ended:
                had = self._buffered
                self._waiting_for = want
                self._cond.wait(timeout=min(1.0, self._stall_seconds))
                self._waiting_for = 0
                if self._buffered != had:
                    waited_since = time.monotonic()
                elif time.monotonic() - waited_since > self._stall_seconds:
                    self._ended = self._disconnected = True  # a stalled client counts as gone
                    break
            if not self._pieces:
                return []
            was_full = self._buffered >= self._read_ahead
            taken, count = [], 0
            while self._pieces and count < size:
                piece = self._pieces.popleft()
                if count + len(piece) > size:  # split without copying: the rest stays as a view
                    keep = size - count
                    piece = memoryview(piece)
                    self._pieces.appendleft(piece[keep:])
                    piece = piece[:keep]
                taken.append(piece)
                count += len(piece)
            self._buffered -= count
        if was_full:
            self._loop.call_soon_threadsafe(self._room.set)
        return taken

    def close(self) -> None:
        with self._cond:
            self._pieces.clear()
            self._buffered = 0
            self._ended = True
            self._cond.notify_all()
        self._loop.call_soon_threadsafe(self._stop_pump)
        super().close()


class StreamingBodyHandler(ASGIHandler):
    """Django's ASGI handler, with raw bodies streamed (:class:`StreamedBody`) rather than spooled."""

    async def handle(self, scope, receive, send):
        if not streams_raw_body(scope):
            return await super().handle(scope, receive, send)
        body = StreamedBody(receive, asyncio.get_running_loop())
        try:
            # Django reads the body through ``read_body(receive)`` and then listens on the same
            # ``receive`` for a disconnect: both get the streamed body's side of it.
            await super().handle(scope, body.receive_after_body, send)
        finally:
            body.close()

    def create_request(self, scope, body_file):
        request, error = super().create_request(scope, body_file)
        if request is not None and isinstance(body_file, StreamedBody):
            # Views that can take the bytes straight into their own buffers (``readinto``) find it here.
            request.streamed_body = body_file
        return request, error

    async def read_body(self, receive):
        body = getattr(receive, "__self__", None)
        if isinstance(body, StreamedBody):
            return body
        return await super().read_body(receive)
