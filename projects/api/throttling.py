"""API rate limits as one counter per time window, not DRF's list of every request's time.

DRF's ``SimpleRateThrottle`` keeps, per user, the time of every request within the rate's
duration and reads and rewrites that whole list on every request: at the default user rate
(3000/minute) a busy script's list holds 3000 floats, serialized twice per call. These
throttles count requests in fixed windows of the rate's duration instead — one increment, a
single Redis round trip (``SharedRedisCache.incr_with_expiry``). A client may therefore make
up to twice the rate across the boundary of two windows; ``Retry-After`` is the time left in
the current one. If the cache cannot be reached the request is let through (and logged):
rate limits protect the service, they should not take it down with Redis.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


def count_in_window(key: str, ttl: int) -> int:
    """Add one to the counter ``key`` (made with a ``ttl``) and return its new value."""
    incr_with_expiry = getattr(cache, "incr_with_expiry", None)
    if incr_with_expiry is not None:
        return incr_with_expiry(key, ttl)
    if cache.add(key, 1, ttl):  # another cache (tests without Redis, local memory)
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired in between
        cache.add(key, 1, ttl)
        return 1


class FixedWindowThrottleMixin:
    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        try:
            count = count_in_window(f"{self.key}:w{window}", self.duration + 1)
        except Exception:
            logger.warning("Rate limit not applied: the cache is unreachable.", exc_info=True)
            return True
        return count <= self.num_requests

    def wait(self) -> float:
        return max(0.0, self.window_ends - self.now)


class WindowAnonRateThrottle(FixedWindowThrottleMixin, AnonRateThrottle):
    pass


class WindowUserRateThrottle(FixedWindowThrottleMixin, UserRateThrottle):
    pass
