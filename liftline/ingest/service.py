"""The ingest service of one process: confirmed writes, reads, ticket status, metrics.

Request handlers (generic and an app's own) call these methods; every failure
comes out as an :class:`~liftline.ingest.validation.ApiError` with the HTTP
status it deserves: 422 for a bad write, 503 + ``Retry-After`` when RabbitMQ
does not confirm within ``ingest_publish_timeout_s`` (down, blocked by an
alarm, nacked) or no owner can answer, 504 when an ``after`` read's write is
not applied in time (with the owner's current position).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from liftline import codec
from liftline.app import App
from liftline.cluster import bootstrap
from liftline.errors import (
    BrokerError,
    ConnectionLost,
    InvalidWrite,
    LiftlineError,
    NoOwner,
    StoreError,
    Timeout,
)
from liftline.ingest.asyncpub import AsyncWriter, Overloaded
from liftline.ingest.metrics import Metrics
from liftline.ingest.reads import AsyncReads, NotApplied
from liftline.ingest.rpc import AsyncRpc
from liftline.ingest.stats import SharedStats
from liftline.ingest.validation import ApiError, invalid, write_error_field
from liftline.jobs.client import JobClient
from liftline.reads.base import ReadResult
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import aconnect
from liftline.tickets import Ticket

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER_S = 2
Write = tuple[str, str, Any, Any]


def unavailable(exc: Exception, what: str = "write not acknowledged") -> ApiError:
    return ApiError(503, "unavailable", f"{what}: {exc}",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


class IngestService:
    """Everything a handler needs, created in the app's lifespan (per process)."""

    def __init__(self, settings: Settings, app: App | None = None) -> None:
        self.settings = settings
        self.app = app
        self.ops: frozenset[str] = codec.BUILTIN_OPS | frozenset(app.reducers if app else ())
        self.metrics = Metrics()
        self.writer: AsyncWriter | None = None
        self.reads: AsyncReads | None = None
        self._rpc: AsyncRpc | None = None
        self._redis: aioredis.Redis | None = None
        self._jobs: JobClient | None = None  # made on the first job request
        self.stats: SharedStats | None = None  # per-route latency of all processes

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Blocking (and retried with backoff): check P and declare the streams.
        await loop.run_in_executor(None, bootstrap.prepare, self.settings)
        self.writer = AsyncWriter(self.settings, self.app, loop)
        self._rpc = AsyncRpc(self.settings, loop)
        self._redis = aconnect(self.settings.redis_url, timeout_s=5)
        self.reads = AsyncReads(self.settings, self._rpc, self._redis)
        self.stats = SharedStats(self.metrics, self._redis, Keys(self.settings.cluster))
        self.stats.start()
        self.metrics.producer_id = self.writer.producer_id
        writer = self.writer
        self.metrics.gauge("pending_writes", lambda: writer.pending)
        self.metrics.gauge("unconfirmed_batches", lambda: writer.producer.publisher.inflight)
        self.metrics.gauge("broker_connected", lambda: float(writer.state() != "down"))
        self.metrics.gauge("broker_blocked", lambda: float(writer.state() == "blocked"))
        log.info("ingest process ready to connect as producer %s", writer.producer_id)

    async def stop(self) -> None:
        if self.stats is not None:
            await self.stats.stop()
        if self.writer is not None:
            await self.writer.close()
        if self._rpc is not None:
            await self._rpc.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self._jobs is not None:
            await asyncio.to_thread(self._jobs.close)

    def jobs(self) -> JobClient:
        """The process's job client (synchronous: call it off the event loop)."""
        if self._jobs is None:
            self._jobs = JobClient(self.settings, self.app)
        return self._jobs

    def state(self) -> str:
        return "starting" if self.writer is None else self.writer.state()

    # -- writes ------------------------------------------------------------
    async def write(self, op: str, key: str, value: Any = None, arg: Any = None,
                    field: str = "") -> Ticket:
        """One write, acknowledged once RabbitMQ confirmed it (a ticket), else ApiError."""
        tickets = await self.write_many([(op, key, value, arg)], field=field, single=True)
        return tickets[0]

    async def write_many(self, writes: list[Write], *, field: str = "writes",
                         single: bool = False) -> list[Ticket]:
        """Several writes, all confirmed, or none acknowledged (503: the caller retries).

        Every write is checked before any is sent, so a bad one sends nothing (422
        naming it, even while RabbitMQ is away).
        """
        writer = self._writer()
        try:
            writer.check_open()
        except (BrokerError, Overloaded) as exc:
            self._check_each(writes, field, single)
            self.metrics.count_writes("failed", len(writes))
            raise unavailable(exc) from None
        began = time.perf_counter()
        try:
            tickets, waiters = writer.submit_many(writes)
        except InvalidWrite as exc:
            self._check_each(writes, field, single)
            self.metrics.count_writes("refused", len(writes))
            raise write_error_field(exc, field) from None  # a limit packing alone misses
        try:
            await writer.confirmed(waiters, len(writes))
        except LiftlineError as exc:
            self.metrics.count_writes("failed", len(writes))
            raise unavailable(exc) from None
        self.metrics.confirm.observe(time.perf_counter() - began)
        self.metrics.count_writes("accepted", len(writes))
        return tickets

    def _check_each(self, writes: list[Write], field: str, single: bool) -> None:
        """422 naming the first write that does not pack (``field``, or ``field[n]``)."""
        for n, (op, key, value, arg) in enumerate(writes):
            try:
                codec.pack_write(op, key, value, arg)
            except InvalidWrite as exc:
                self.metrics.count_writes("refused", len(writes))
                raise write_error_field(exc, field if single else f"{field}[{n}]") from None

    def _writer(self) -> AsyncWriter:
        if self.writer is None:
            raise unavailable(LiftlineError("the service is starting"))
        return self.writer

    # -- reads -------------------------------------------------------------
    async def get(self, key: str, consistency: str = "primary", after: Ticket | None = None,
                  timeout_ms: int = 2000, field: str = "key") -> ReadResult:
        try:
            codec.check_key(key)
        except InvalidWrite as exc:
            raise invalid(field, str(exc)) from None
        return await self._read(self._reads().get(key, consistency, after, timeout_ms))

    async def get_many(self, keys: list[str], consistency: str = "primary",
                       after: Ticket | None = None, timeout_ms: int = 2000
                       ) -> dict[str, ReadResult]:
        return await self._read(self._reads().get_many(keys, consistency, after, timeout_ms))

    async def status(self, ticket: Ticket) -> dict[str, Any]:
        return await self._read(self._reads().status(ticket))

    def _reads(self) -> AsyncReads:
        if self.reads is None:
            raise unavailable(LiftlineError("the service is starting"), "read refused")
        return self.reads

    async def _read(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except NotApplied as exc:
            raise ApiError(504, "not_applied", str(exc),
                           extra={"ticket": str(exc.ticket), **exc.position}) from None
        except NoOwner as exc:
            raise unavailable(exc, "read refused") from None
        except (ConnectionLost, BrokerError, StoreError, Timeout, aioredis.RedisError) as exc:
            raise unavailable(exc, "read failed") from None
        except InvalidWrite as exc:
            raise invalid("", str(exc)) from None
