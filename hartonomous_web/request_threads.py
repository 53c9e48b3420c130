"""A fixed set of long-lived threads for the synchronous part of HTTP requests.

Django's ASGI handler runs each request's synchronous code (middleware, views, the ORM) in
a thread of its own, made for that request. With many requests at once that is many
threads taking turns on one interpreter lock: every one pays for the switching, and each
request finishes late because it shared the core with all the others (measured by
``bench/web_latency.py``: with 20 clients, 1.5–2× the CPU per request of one client alone,
p99 about 2× p50).

:class:`RequestThreads` wraps the ``"http"`` application: at most ``size`` requests run at
once, each on one of ``size`` threads that live as long as the process; the others wait,
first come first served, on the event loop (where waiting costs nothing). It uses asgiref's
public ``ThreadSensitiveContext(executor=...)``: Django's handler then keeps every
thread-sensitive call of the request (``request_started``, the middleware and view,
``request_finished``) on the request's thread, as it does with its own per-request thread,
so database connections are opened and closed exactly as before (``CONN_MAX_AGE`` stays 0).

Websockets do not pass through here. A request holds its thread until its response is sent
(the handler reads the body first, so a slow client uploading a chunk holds one for that
long); long work — inference, streaming answers — belongs in async views or in executors of
its own, not in these threads.

:class:`RequestThreadHandler` is the Django handler behind it. Django's ASGI handler runs a
request's synchronous code in several separate trips between the event loop and the
request's thread (the ``request_started`` signal, the middleware, the view, rendering the
template, closing the response), because its middleware chain is built for async views. A
request that came through :class:`RequestThreads` (marked in its scope) instead runs all of
it — signal, middleware, view, rendering, and closing a response whose content is already
in memory — in one call on its thread, through a second, synchronous middleware chain
(Django's WSGI path), which adapts async views as Django does. Only sending stays on the
event loop; so does receiving a raw body that streams while the view runs (streamed_body.py:
upload chunks), which the view reads from its thread. Requests outside the slots
(``unbounded_prefixes``) take Django's own path. Measured by ``bench/web_latency.py``:
``/healthz`` 1.5 -> 0.56 ms of server CPU per request; by ``bench/upload.py``: an upload
chunk's setup before its view ran took 17-27 ms on Django's path, beside an event loop busy
receiving the body.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.urls import set_script_prefix

from hartonomous_web.streamed_body import StreamedBody, StreamingBodyHandler, streams_raw_body

#: Set in the scope of a request that runs on one of the threads of :class:`RequestThreads`.
ON_REQUEST_THREAD = "hartonomous.request_thread"


class RequestThreads:
    """ASGI middleware: run ``app``'s HTTP requests on ``size`` long-lived threads.

    Requests start one at a time: the next one waits until the running one has finished or has
    run for ``handoff`` seconds, whichever comes first. Quick requests (pages and API calls
    take a few milliseconds) therefore run alone and never share the interpreter lock with
    one another — with four running at once each cost about 1.5 times the CPU and finished
    four times later (``bench/web_latency.py``) — while a slow one (an upload chunk, a large
    page) holds the others up for at most ``handoff``, after which they go on beside it on
    the other threads.
    """

    def __init__(self, app, size: int, *, handoff: float = 0.05, unbounded_prefixes: tuple[str, ...] = ()) -> None:
        if size < 1:
            raise ValueError(f"RequestThreads needs at least one thread, not {size}.")
        self.app = app
        self.size = size
        self.handoff = handoff
        #: Paths served outside the slots: async views that stream for a long time (the
        #: OpenAI-compatible API) would otherwise hold a slot per open stream and stall the site.
        self.unbounded_prefixes = unbounded_prefixes
        self._slots = asyncio.Semaphore(size)
        self._turn = asyncio.Semaphore(1)  # who may start now (see the class docstring)
        # One single-thread executor per slot: a request's sync calls all land on its thread.
        self._idle = deque(ThreadPoolExecutor(1, thread_name_prefix=f"http-{i}") for i in range(size))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(self.unbounded_prefixes):
            return await self.app(scope, receive, send)
        async with self._slots:
            await self._turn.acquire()
            passed = False

            def pass_turn() -> None:
                nonlocal passed
                if not passed:
                    passed = True
                    self._turn.release()

            timer = asyncio.get_running_loop().call_later(self.handoff, pass_turn)
            executor = self._idle.popleft()
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.app({**scope, ON_REQUEST_THREAD: True}, receive, send)
            finally:
                self._idle.append(executor)
                timer.cancel()
                pass_turn()


class RequestThreadHandler(StreamingBodyHandler):
    """Django's handler; a request on a request thread runs its synchronous part in one call."""

    #: A streamed response with plain (synchronous) content, such as a file download, is read
    #: on the request's thread this many bytes at a time and each piece sent from the event
    #: loop. (Django's own handler reads such content whole into memory before sending it.)
    stream_piece_bytes = 1024 * 1024

    def __init__(self) -> None:
        super().__init__()  # Django's chain, for the requests that take Django's path
        self._sync_chain = BaseHandler()
        self._sync_chain.load_middleware(is_async=False)

    async def handle(self, scope, receive, send):
        if not scope.get(ON_REQUEST_THREAD):
            return await super().handle(scope, receive, send)
        if streams_raw_body(scope):
            # The view reads it while it arrives; a client that goes away ends it early.
            body_file = StreamedBody(receive, asyncio.get_running_loop())
        else:
            try:
                body_file = await self.read_body(receive)
            except RequestAborted:
                return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:  # its content was produced while sending: close it now
                    await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def _respond(self, scope, body_file):
        """On the request's thread: what Django's handler does between receiving and sending."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self._sync_chain.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.stream_piece_bytes
        if not response.streaming:
            response.close()  # the content is in memory: request_finished runs here, on this thread
        elif not response.is_async:
            response.streaming_content = self._read_on_this_thread(response.streaming_content)
        return response

    def _read_on_this_thread(self, content):
        """``content`` (an iterator of bytes) as an async iterator that reads it on this thread."""
        take = sync_to_async(_take, thread_sensitive=True)
        limit = self.stream_piece_bytes

        async def pieces():
            while piece := await take(content, limit):
                yield piece

        return pieces()


def _take(content, limit: int) -> bytes:
    """The next ``limit`` bytes or more of ``content`` (whole parts); ``b""`` when it has ended."""
    parts, size = [], 0
    for part in content:
        parts.append(part)
        size += len(part)
        if size >= limit:
            break
    return b"".join(parts)
