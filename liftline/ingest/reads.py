"""Reads and ticket status for the HTTP service, at each consistency level.

- ``stale``: the value last flushed to Redis (no owner needed); ``source`` is
  ``"redis"``. With ``after=<ticket>``, once the flushed watermark of the
  ticket's producer covers it (the write is persisted), polled in Redis.
- ``primary``: the partition's owner answers from memory (RPC); ``source`` is
  ``"owner:<member id>"``.
- ``after=<ticket>``: the owner of the ticket's partition waits until that
  write is applied, up to ``timeout_ms``, then the key's owner answers
  (read-your-writes across the asynchronous acknowledgement, for a key of any
  partition).

Ticket status: ``persisted`` when the Redis watermark of its producer covers
it, ``applied`` when the owner's in-memory watermark does, else ``queued``.
What to ask and how to read the answers is :class:`~liftline.reads.core.ReadCore`'s;
this module only carries its steps over :class:`AsyncRpc` and redis.asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from liftline.errors import InvalidWrite
from liftline.ingest.rpc import AsyncRpc
from liftline.reads.base import NotApplied, ReadResult
from liftline.reads.core import ReadCore
from liftline.reads.protocol import StatusReply
from liftline.reads.steps import RedisCall, Step, Steps, arun, arun_redis
from liftline.settings import Settings
from liftline.tickets import Ticket

__all__ = ["AsyncReads", "NotApplied"]
T = TypeVar("T")
POLL_S = 0.02  # how often a stale read with ``after`` looks at the flushed watermark


class AsyncReads:
    """The read core driven from the event loop (use from the loop's own thread)."""

    def __init__(self, settings: Settings, rpc: AsyncRpc, client: aioredis.Redis) -> None:
        self.settings = settings
        self.rpc = rpc
        self.redis = client
        self.core = ReadCore(settings)

    async def get(self, key: str, consistency: str = "primary", after: Ticket | None = None,
                  timeout_ms: int = 2000) -> ReadResult:
        """``key`` at ``consistency``; NotApplied when ``after`` is not applied in time."""
        if _stale(consistency):
            if after is not None:
                await self.wait_persisted(after, timeout_ms)
            return await self._run(self.core.stale(key))
        return await self._run(self.core.get(key, after, timeout_ms))

    async def get_many(self, keys: Iterable[str], consistency: str = "primary",
                       after: Ticket | None = None, timeout_ms: int = 2000
                       ) -> dict[str, ReadResult]:
        """Many keys in one request per owner (or one Redis pipeline when stale);
        with ``after``, once that write is applied (stale: persisted)."""
        if _stale(consistency):
            if after is not None:
                await self.wait_persisted(after, timeout_ms)
            return await self._run(self.core.stale_many(keys))
        if after is not None:
            await self.wait_applied(after, timeout_ms)
        return await self._run(self.core.get_many(keys))

    async def wait_persisted(self, ticket: Ticket, timeout_ms: int) -> int:
        """Once Redis' watermark of the ticket's producer covers it (the flush that
        carried it happened); NotApplied with that watermark after ``timeout_ms``.
        Polled: a flush comes every ``flush_interval_ms``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, timeout_ms) / 1000.0
        while True:
            seq = await self._run(self.core.persisted_seq(ticket))
            if seq >= ticket.seq:
                return seq
            left = deadline - loop.time()
            if left <= 0:
                raise NotApplied(ticket, seq, None, timeout_ms)
            await asyncio.sleep(min(POLL_S, left))

    async def wait_applied(self, ticket: Ticket, timeout_ms: int) -> StatusReply:
        """Once the ticket's owner applied it; NotApplied with the position otherwise."""
        return await self._run(self.core.wait_applied(ticket, timeout_ms))

    async def status(self, ticket: Ticket) -> dict[str, Any]:
        """``{"ticket", "partition", "status": queued|applied|persisted|expired, "persisted_seq",
        "applied_seq"}``."""
        return (await self._run(self.core.status(ticket))).to_dict()

    async def _run(self, steps: Steps[T]) -> T:
        return await arun(steps, self._execute)

    async def _execute(self, step: Step) -> Any:
        if not isinstance(step, RedisCall):
            return await self.rpc.call(step.queue, step.body, step.timeout_s)
        return await arun_redis(self.redis, step)


def _stale(consistency: str) -> bool:
    if consistency not in ("primary", "stale"):
        raise InvalidWrite(f"consistency must be primary or stale, not {consistency!r}")
    return consistency == "stale"
