"""Per-route latency of every ingest process of a cluster, summed in Redis.

Each process measures its own requests (:class:`~liftline.ingest.metrics.Metrics`);
uvicorn's worker processes share a socket, so one process sees only the
requests that landed on it. :class:`SharedStats` adds what its process counted
since its last push to one Redis hash of the cluster (``Keys.ingest_stats``):
the count and the total latency as integer microseconds (HINCRBY, so pushes
from many processes add up exactly) and the largest latency (kept as the max of
every push, in the same script). It pushes every ``interval_s`` and right
before it reads, so a reading holds this process's figures up to that moment
and every other process's up to one interval old. The figures are kept for the
cluster's life (a restarted process adds on; nothing is counted twice, since a
push only ever sends what was not pushed yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from liftline.ingest.metrics import Metrics
from liftline.store.keys import Keys

log = logging.getLogger(__name__)

_PUSH_LUA = """
for i = 1, #ARGV, 4 do
  local f = ARGV[i]
  redis.call('HINCRBY', KEYS[1], f .. '|n', ARGV[i + 1])
  redis.call('HINCRBY', KEYS[1], f .. '|us', ARGV[i + 2])
  local top = tonumber(redis.call('HGET', KEYS[1], f .. '|max') or '0')
  if tonumber(ARGV[i + 3]) > top then
    redis.call('HSET', KEYS[1], f .. '|max', ARGV[i + 3])
  end
end
return #ARGV / 4
"""


@dataclass(frozen=True)
class RouteStats:
    """One route's figures over every process: requests, mean and max latency."""

    method: str
    route: str
    count: int
    total_us: int
    max_us: int

    @property
    def mean_ms(self) -> float:
        return self.total_us / self.count / 1000.0 if self.count else 0.0

    @property
    def max_ms(self) -> float:
        return self.max_us / 1000.0


class SharedStats:
    """Pushes one process's per-route latency to Redis and reads the cluster's sum."""

    def __init__(self, metrics: Metrics, client: aioredis.Redis, keys: Keys,
                 interval_s: float = 1.0) -> None:
        self.metrics = metrics
        self.redis = client
        self.key = keys.ingest_stats
        self.interval_s = interval_s
        self._pushed: dict[tuple[str, str], tuple[int, int]] = {}  # route -> (count, us)
        self._script = client.register_script(_PUSH_LUA)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop pushing, after one last push of what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self.push()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.push()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("route statistics not pushed to Redis (kept for the next "
                            "push): %s", exc)

    async def push(self) -> int:
        """Send what this process counted since the last push; returns the routes sent."""
        async with self._lock:
            args: list[Any] = []
            sent: dict[tuple[str, str], tuple[int, int]] = {}
            for (method, route), hist in list(self.metrics.latency.items()):
                total_us = round(hist.total * 1e6)
                count, us = self._pushed.get((method, route), (0, 0))
                if hist.count == count:
                    continue
                args += [f"{method} {route}", hist.count - count, total_us - us,
                         round(hist.max * 1e6)]
                sent[(method, route)] = (hist.count, total_us)
            if not args:
                return 0
            await self._script(keys=[self.key], args=args)
            self._pushed.update(sent)  # only once Redis has them: a failed push is sent again
            return len(sent)

    async def read(self) -> list[RouteStats]:
        """Every route's figures summed over the cluster's processes (this one pushed first)."""
        await self.push()
        raw = await self.redis.hgetall(self.key)
        fields: dict[str, dict[str, int]] = {}
        for name, value in raw.items():
            label, _, part = (name.decode() if isinstance(name, bytes) else name).rpartition("|")
            fields.setdefault(label, {})[part] = int(value)
        out = []
        for label, parts in sorted(fields.items()):
            method, _, route = label.partition(" ")
            out.append(RouteStats(method, route, parts.get("n", 0), parts.get("us", 0),
                                  parts.get("max", 0)))
        return out
