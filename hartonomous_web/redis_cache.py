"""Django's Redis cache with one connection pool per process instead of one per request.

Django keeps cache objects in a context-local store, and under ASGI every request runs in a
context of its own: each request built a new ``RedisCache``, a new connection pool and a new
TCP connection to Redis (with redis-py's handshake, which reads its own package metadata from
disk), only to drop it when the request ended. On the token-authenticated API, where DRF's
throttling reads and writes the cache on every request, that was about a fifth of the
request's CPU (``bench/web_latency.py``, py-spy).

:class:`SharedRedisCache` keeps one cache client (with its pools and ``redis.Redis``
objects, all thread-safe) per location and options for the life of the process; redis-py itself replaces the pool's
connections in a forked child (RQ's work horses).
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple, object] = {}
_lock = threading.Lock()


class ReusedClientRedisCacheClient(RedisCacheClient):
    """Django's client, keeping one ``redis.Redis`` per pool instead of making one per command
    (each builds redis-py's table of a hundred-odd response callbacks)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._redis_clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._redis_clients.get(id(pool))
        if client is None:
            client = self._redis_clients[id(pool)] = self._client(connection_pool=pool)
        return client


class SharedRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient

    @cached_property
    def _cache(self):
        key = (self._class, tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
