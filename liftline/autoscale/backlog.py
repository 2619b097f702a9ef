"""The backlog: writes the primaries have not applied yet, and jobs not done yet.

- Streams, per partition: writes in the entries after the primary's applied
  offset (from the workers' heartbeat reports; the flushed offset in Redis when
  no primary is live), counted exactly by :class:`StreamTails`.
- Jobs, per queue: ready messages from a passive ``queue.declare`` of the jobs
  queue and the keyed queues (exact, now); plus unacked ones, i.e. jobs a
  worker is running, from the Redis job counters (started − finished). The
  management API has the unacked figure too, but only as a sample refreshed
  every 5 s and only where it is enabled; unacked is bounded by the workers'
  prefetch anyway, so it never dominates.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
import redis

from liftline.autoscale.streams import StreamTails
from liftline.cluster import bootstrap
from liftline.cluster.registry import live_members, owners_of
from liftline.errors import BrokerError, BrokerUnavailable, StoreUnavailable
from liftline.jobs import topology as job_topology
from liftline.jobs.status import JobStatus
from liftline.queue.connection import connect_blocking
from liftline.queue.topology import Names
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import RedisStore, connect

log = logging.getLogger(__name__)


@dataclass
class Backlog:
    """One reading. ``streams``/``entries`` per partition; ``jobs`` ready per queue."""

    streams: dict[int, int] = field(default_factory=dict)
    entries: dict[int, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    jobs_unacked: int = 0
    members: int = 0
    read_s: float = 0.0
    # Per partition: writes missing from its stream, as its primary reports them.
    missing: dict[int, int] = field(default_factory=dict)

    @property
    def stream_total(self) -> int:
        return sum(self.streams.values())

    @property
    def job_total(self) -> int:
        return sum(self.jobs.values()) + self.jobs_unacked

    @property
    def total(self) -> int:
        return self.stream_total + self.job_total


class BacklogReader:
    """Reads the backlog of one cluster; owns one AMQP connection and one Redis client.

    Single-threaded. :meth:`wait` spends the time between readings serving the
    connection (stream entries arrive, heartbeats flow). A lost connection is
    opened again at the next reading; the reading in between raises BrokerError.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = connect(settings.redis_url)
        self.store = RedisStore(self.redis, settings.cluster)
        self.keys = Keys(settings.cluster)
        self.job_status = JobStatus(self.redis, settings.cluster, settings.job_result_ttl_s)
        # Like a worker: create the cluster if it is new, refuse a wrong partition count.
        self.partitions = bootstrap.check_partitions(self.redis, settings)
        self.tails = StreamTails(Names(settings.cluster), self.partitions)
        self._conn: pika.BlockingConnection | None = None
        self._declare: Any = None
        self._job_queues = job_topology.work_queues(settings)

    # -- connection ----------------------------------------------------------
    def _connection(self, applied: dict[int, int]) -> pika.BlockingConnection:
        if self._conn is None or not self._conn.is_open:
            self._conn = connect_blocking(self.settings, name="liftline-autoscale", attempts=2)
            self._declare = None
            try:
                bootstrap.declare(self._conn.channel(), self.settings)  # the streams it reads
                self.tails.attach(self._conn, {p: a + 1 for p, a in applied.items()})
                self._catch_up(self._conn)
            except BaseException:
                self._drop()  # half set up: start over at the next reading
                raise
        return self._conn

    def _catch_up(self, conn: pika.BlockingConnection, idle_s: float = 0.2,
                  max_s: float = 10.0) -> None:
        """Read what the streams hold before the first reading: until entries stop
        coming for ``idle_s`` (or ``max_s``), so it does not start low."""
        started = last = time.monotonic()
        seen = self.tails.seen()
        while time.monotonic() - last < idle_s and time.monotonic() - started < max_s:
            conn.process_data_events(time_limit=0.05)
            self.tails.on_events()
            if self.tails.seen() != seen:
                seen, last = self.tails.seen(), time.monotonic()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.tails.detach()
        self._declare = None
        if conn is not None and conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                conn.close()

    def wait(self, seconds: float) -> None:
        """Serve the connection for ``seconds`` (or sleep if there is none)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._conn is None or not self._conn.is_open:
                time.sleep(min(left, 0.1))
                continue
            try:
                self._conn.process_data_events(time_limit=min(left, 0.05))
                self.tails.on_events()
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("autoscaler lost RabbitMQ (%r); reconnecting at the next reading",
                            exc)
                self._drop()

    # -- reading -------------------------------------------------------------
    def read(self) -> Backlog:
        """The backlog now. Raises BrokerError / StoreError when a server does not answer."""
        started = time.monotonic()
        try:
            members = live_members(self.redis, self.keys)
            owners = owners_of(self.redis, self.keys)
            flushed = self.store.flushed_offsets(list(range(self.partitions)))
            unacked = sum(row["running"] for row in self.job_status.stats())
        except redis.RedisError as exc:
            raise StoreUnavailable(f"reading the backlog from Redis failed: {exc}") from exc
        applied, oldest = self._applied(members, owners, flushed)
        try:
            conn = self._connection(oldest)
            # Entries published up to now arrive within a few loop turns.
            conn.process_data_events(time_limit=0.02)
            self.tails.on_events()
            jobs = self._job_depths(conn)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise BrokerUnavailable(f"reading the backlog failed: {exc!r}") from exc
        out = Backlog(jobs=jobs, jobs_unacked=unacked, members=len(members),
                      missing=_missing(members, owners))
        for p in range(self.partitions):
            out.entries[p], out.streams[p] = self.tails.behind(p, applied[p])
        self.tails.trim(oldest)
        out.read_s = round(time.monotonic() - started, 4)
        return out

    def _applied(self, members: dict[str, dict[str, Any]], owners: dict[int, str],
                 flushed: dict[int, int]) -> tuple[dict[int, int], dict[int, int]]:
        """Per partition: the primary's applied offset (or the flushed one), and the
        oldest offset any holder or Redis is at (entries after it are still needed)."""
        applied: dict[int, int] = {}
        oldest: dict[int, int] = {}
        for p in range(self.partitions):
            base = flushed.get(p, -1)
            reports = {m: r["partitions"][p] for m, r in members.items() if p in r["partitions"]}
            primary = reports.get(owners.get(p, ""))
            if primary is not None and primary.get("role", "primary") == "primary":
                applied[p] = max(base, int(primary["applied"]))
            else:
                applied[p] = base
            oldest[p] = min([base] + [int(r["applied"]) for r in reports.values()])
        return applied, oldest

    def _job_depths(self, conn: pika.BlockingConnection) -> dict[str, int]:
        if self._declare is None or not self._declare.is_open:
            self._declare = conn.channel()
        try:
            found = job_topology.depths(self._declare, self._job_queues)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._declare = None
            raise BrokerError(f"declaring the job queues passively failed: {exc}") from exc
        return {queue: ready for queue, (ready, _) in found.items()}

    def close(self) -> None:
        self._drop()
        with contextlib.suppress(Exception):
            self.redis.close()


def _missing(members: dict[str, dict[str, Any]], owners: dict[int, str]) -> dict[int, int]:
    """Writes missing from each partition's stream, from its primary's report."""
    out: dict[int, int] = {}
    for p, owner in owners.items():
        report = members.get(owner, {}).get("partitions", {}).get(p)
        if report is not None and report.get("missing"):
            out[p] = int(report["missing"])
    return out
