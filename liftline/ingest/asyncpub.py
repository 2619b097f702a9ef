"""Confirmed writes from asyncio code: the Producer with its publisher on the event loop.

One :class:`AsyncWriter` per process (one producer id). Writes are batched per
partition for ``ingest_linger_ms`` (5 ms) and one RabbitMQ confirm settles a
whole batch; each batch gets one asyncio future that every request in it
awaits, so a confirm costs one callback, not one per request. A write is
reported confirmed only after RabbitMQ confirmed its batch; a nack, a return,
a broker that stays away or blocks the connection past
``ingest_publish_timeout_s`` fails it, within that bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from liftline.app import App
from liftline.errors import BrokerUnavailable, LiftlineError, PublishFailed, Timeout
from liftline.producer.client import Producer
from liftline.queue.batch import Batch
from liftline.queue.loops import AsyncioLoop
from liftline.settings import Settings
from liftline.tickets import Ticket

log = logging.getLogger(__name__)


class Overloaded(LiftlineError):
    """Too many writes of this process await confirms; the caller should retry later."""


class AsyncWriter:
    """Submits writes on the running loop; :meth:`confirmed` awaits their batches."""

    def __init__(self, settings: Settings, app: App | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        # The publish bound doubles as the confirm timeout: a batch that waited
        # that long is failed by the publisher itself (and never sent if it was
        # still waiting for a connection), so the 503 is mostly the whole truth.
        self.settings = settings.replace(linger_ms=settings.ingest_linger_ms,
                                         confirm_timeout_s=settings.ingest_publish_timeout_s)
        self.loop = loop
        self.driver = AsyncioLoop(loop)
        self.producer = Producer(self.settings, app=app, declare=False, driver=self.driver,
                                 hold_while_blocked=True)
        self.pending = 0
        self._waiters: dict[Batch, asyncio.Future[LiftlineError | None]] = {}
        self._timers: dict[Batch, asyncio.TimerHandle] = {}
        self._down_since: float | None = None
        # The publisher fails a batch after the publish timeout by itself; this timer
        # per batch (not per request) guarantees the answer even if it did not.
        self._bound_s = self.settings.ingest_publish_timeout_s + 1.0

    @property
    def producer_id(self) -> str:
        return self.producer.producer_id

    def state(self) -> str:
        """``connected``, ``blocked`` (a RabbitMQ resource alarm) or ``down``."""
        publisher = self.producer.publisher
        if not publisher.connected.is_set():
            return "down"
        return "blocked" if publisher.blocked else "connected"

    def check_open(self) -> None:
        """Refuse at once what cannot be confirmed in time (no point making callers wait)."""
        state = self.state()
        if state == "blocked":
            raise BrokerUnavailable("RabbitMQ is blocking publishers (memory or disk alarm)")
        if state == "down":
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
            elif now - self._down_since > self.settings.ingest_publish_timeout_s:
                raise BrokerUnavailable("RabbitMQ is unreachable")
        else:
            self._down_since = None
        if self.pending >= self.settings.ingest_max_pending:
            raise Overloaded(f"{self.pending} writes await confirms in this process")

    def submit(self, op: str, key: str, value: Any, arg: Any = None
               ) -> tuple[Ticket, asyncio.Future[LiftlineError | None]]:
        """Queue one write (InvalidWrite for bad input); returns its ticket and batch future.

        The future's result is None once confirmed, else the error.
        """
        future = self.producer.submit(op, key, value, arg)
        self.pending += 1
        return future.ticket, self._waiter(future.batch)

    def submit_many(self, writes: list[tuple[str, str, Any, Any]]
                    ) -> tuple[list[Ticket], list[asyncio.Future[LiftlineError | None]]]:
        """Queue several writes in one call, all or none (InvalidWrite, nothing queued, for a
        bad one); returns their tickets, in order, and one future per batch they went into."""
        futures = self.producer.submit_many(writes)
        self.pending += len(writes)
        return futures.tickets(), [self._waiter(batch) for batch in futures.batches]

    def _waiter(self, batch: Batch) -> asyncio.Future[LiftlineError | None]:
        waiter = self._waiters.get(batch)
        if waiter is None:
            waiter = self._waiters[batch] = self.loop.create_future()
            self._timers[batch] = self.loop.call_later(self._bound_s, _resolve, waiter, Timeout(
                f"not confirmed within {self._bound_s:.1f}s"))
            batch.add_done_callback(self._settled)
        return waiter

    def _settled(self, batch: Batch) -> None:
        timer = self._timers.pop(batch, None)
        if timer is not None:
            timer.cancel()
        waiter = self._waiters.pop(batch, None)
        if waiter is None or waiter.done():
            return
        if threading_is_loop(self.loop):
            waiter.set_result(batch.error)
        else:  # settled off the loop (only when the loop is shutting down)
            self.loop.call_soon_threadsafe(_resolve, waiter, batch.error)

    async def confirmed(self, waiters: list[asyncio.Future[LiftlineError | None]],
                        count: int) -> None:
        """Wait until every batch in ``waiters`` is confirmed; raise the first failure.

        ``count`` writes are released from :attr:`pending` whatever the outcome.
        Bounded: ``ingest_publish_timeout_s`` plus one second of grace, then Timeout
        (each batch future has that deadline, so awaiting it is enough).
        """
        try:
            for waiter in dict.fromkeys(waiters):
                # Shielded: a cancelled request must not cancel the future it shares.
                error = waiter.result() if waiter.done() else await asyncio.shield(waiter)
                if error is not None:
                    raise error
        finally:
            self.pending -= count

    async def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is buffered, wait for its confirms (bounded), close the connection."""
        waiters = list(self._waiters.values())
        self.producer.publisher.wake()
        if waiters:
            await asyncio.wait(waiters, timeout=timeout_s)
        self.producer.publisher.begin_stop()
        if not await self.driver.wait_halted(timeout_s):
            log.warning("ingest publisher did not close within %.0fs", timeout_s)


def _resolve(waiter: asyncio.Future[LiftlineError | None], error: LiftlineError | None) -> None:
    if not waiter.done():
        waiter.set_result(error)


def threading_is_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called on ``loop``'s own thread while it runs."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


__all__ = ["AsyncWriter", "BrokerUnavailable", "Overloaded", "PublishFailed"]
