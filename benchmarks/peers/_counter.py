"""The one thing every benchmark job does: INCR a counter in Redis."""

from __future__ import annotations

import os
import threading

import redis

_lock = threading.Lock()
_client: redis.Redis | None = None


def bump() -> None:
    """INCR ``BENCH_PEER_COUNTER`` (one redis-py client per process; it is thread-safe)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = redis.Redis.from_url(os.environ["BENCH_PEER_REDIS_URL"])
    _client.incr(os.environ["BENCH_PEER_COUNTER"])
