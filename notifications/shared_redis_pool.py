"""One Redis connection pool per URL for the whole process, for Django's RedisCache (the rate limits' counts).

Django keeps a cache instance per thread (asgiref Local), and RedisCache builds
its pool per instance. Under ASGI every sync request runs in a thread of its own,
so each request opened a new Redis connection just to count itself: 18% of the
server's busy time in the bench's event-stream fan-out (docs/benchmarks.md).
Set as the cache's `pool_class`, this hands every instance the same pool.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import redis


class SharedConnectionPool(redis.ConnectionPool):
    _shared: ClassVar[dict[tuple[str, str], redis.ConnectionPool]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        key = (url, repr(sorted(kwargs.items())))
        with cls._shared_lock:
            if key not in cls._shared:
                # A plain pool: redis-py's own checks (a forked child gets connections of its own) still hold.
                cls._shared[key] = redis.ConnectionPool.from_url(url, **kwargs)
            return cls._shared[key]
