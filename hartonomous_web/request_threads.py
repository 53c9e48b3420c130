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
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext


class RequestThreads:
    """ASGI middleware: run ``app``'s HTTP requests on ``size`` long-lived threads."""

    def __init__(self, app, size: int, *, unbounded_prefixes: tuple[str, ...] = ()) -> None:
        if size < 1:
            raise ValueError(f"RequestThreads needs at least one thread, not {size}.")
        self.app = app
        self.size = size
        #: Paths served outside the slots: async views that stream for a long time (the
        #: OpenAI-compatible API) would otherwise hold a slot per open stream and stall the site.
        self.unbounded_prefixes = unbounded_prefixes
        self._slots = asyncio.Semaphore(size)
        # One single-thread executor per slot: a request's sync calls all land on its thread.
        self._idle = deque(ThreadPoolExecutor(1, thread_name_prefix=f"http-{i}") for i in range(size))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(self.unbounded_prefixes):
            return await self.app(scope, receive, send)
        async with self._slots:
            executor = self._idle.popleft()
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await self.app(scope, receive, send)
            finally:
                self._idle.append(executor)
