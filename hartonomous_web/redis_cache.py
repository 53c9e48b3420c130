"""Django's Redis cache with one connection pool per process instead of one per request,
and the session engine that reads sessions through it.

Django keeps cache objects in a context-local store, and under ASGI every request runs in a
context of its own: each request built a new ``RedisCache``, a new connection pool and a new
TCP connection to Redis (with redis-py's handshake, which reads its own package metadata from
disk), only to drop it when the request ended. On the token-authenticated API, where DRF's
throttling reads and writes the cache on every request, that was about a fifth of the
request's CPU (``bench/web_latency.py``, py-spy).

:class:`SharedRedisCache` keeps one cache client (with its pools and ``redis.Redis``
objects, all thread-safe) per location and options for the life of the process; redis-py itself replaces the pool's
connections in a forked child (RQ's work horses).

``SESSION_ENGINE = "hartonomous_web.redis_cache"`` (set when Redis is configured) is Django's
``cached_db`` engine — sessions read from the cache, written through to the database — with
every cache call made safe: while Redis cannot be reached, sessions are read from and written
to the database alone (and the failure is logged) instead of failing the page.
"""

from __future__ import annotations

import logging
import threading

from django.contrib.sessions.backends import cached_db
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

logger = logging.getLogger(__name__)

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

    def incr_with_expiry(self, key, ttl: int, version=None) -> int:
        """Add one to an integer counter, creating it with a ``ttl`` (seconds): one round trip."""
        key = self.make_and_validate_key(key, version=version)
        client = self._cache.get_client(key, write=True)
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl, nx=True)
        return int(pipe.execute()[0])


class _Forgiving:
    """The few cache calls sessions make, answered as a miss when the cache is unreachable."""

    def __init__(self, cache) -> None:
        self._cache = cache

    def _try(self, what: str, call, *args, default=None):
        try:
            return call(*args)
        except Exception:
            logger.error("Session cache unreachable (%s): using the database alone.", what, exc_info=True)
            return default

    def get(self, key):
        return self._try("get", self._cache.get, key)

    def set(self, key, value, timeout):
        self._try("set", self._cache.set, key, value, timeout)

    def delete(self, key):
        self._try("delete", self._cache.delete, key)

    def __contains__(self, key) -> bool:
        return bool(self._try("has_key", self._cache.has_key, key, default=False))

    async def _atry(self, what: str, call, *args, default=None):
        try:
            return await call(*args)
        except Exception:
            logger.error("Session cache unreachable (%s): using the database alone.", what, exc_info=True)
            return default

    async def aget(self, key):
        return await self._atry("get", self._cache.aget, key)

    async def aset(self, key, value, timeout):
        await self._atry("set", self._cache.aset, key, value, timeout)

    async def adelete(self, key):
        await self._atry("delete", self._cache.adelete, key)


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key=None) -> None:
        super().__init__(session_key)
        self._cache = _Forgiving(self._cache)
