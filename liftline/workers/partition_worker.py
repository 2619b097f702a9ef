"""The partition worker: consumes partition streams, applies, flushes, answers reads.

One thread owns one pika connection and the in-memory stores. Each heartbeat
the worker computes the assignment from the live members and takes, promotes,
demotes or releases partitions (see ``ownership``). Order of a graceful stop
(SIGTERM): stop consuming, flush the partitions it leads, deregister, close,
exit 0. A SIGKILL loses nothing either: Redis holds a state equal to the stream
folded up to the flushed offset, and the next owner replays from there.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from liftline import codec
from liftline.app import App
from liftline.cluster import bootstrap
from liftline.cluster.registry import Membership, live_members, owners_of
from liftline.errors import BrokerError, InvalidMessage, StoreUnavailable
from liftline.queue import topology
from liftline.queue.connection import Nodes, close_without_cancel, connect_blocking
from liftline.settings import Settings
from liftline.store.memory import PartitionStore
from liftline.store.redis_store import RedisStore, connect
from liftline.workers.ownership import Owned, Ownership
from liftline.workers.rpc import ReadServer

log = logging.getLogger(__name__)


# A consumer channel the broker closed is opened again after this long; after this
# many closes in a row the worker reconnects, to another node of the list.
_REVIVE_AFTER_S = 0.5
_REVIVE_LIMIT = 10


@dataclass
class Consumer:
    """A partition's stream consumer: its channel and the delivery tags to ack."""

    channel: Any
    last_tag: int = 0
    acked_tag: int = 0
    # Closes of this partition's consumer channels in a row (reset by a delivery),
    # and when a closed one is to be opened again.
    failures: int = 0
    revive_at: float = 0.0


class Worker:
    """Holds partitions as primary or standby: applies their streams, persists the primaries."""

    def __init__(self, settings: Settings, app: App | None = None,
                 member_id: str | None = None) -> None:
        self.settings = settings
        self.app = app or App()
        self.member_id = member_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.names = topology.Names(settings.cluster)
        # partition → its stream consumer on the current connection.
        self.consumers: dict[int, Consumer] = {}
        self._stopping = False
        self._connection: pika.BlockingConnection | None = None
        # Kept across reconnects: after losing a node the worker tries the next one.
        self._nodes = Nodes(settings)
        self._redis = connect(settings.redis_url)
        self.store = RedisStore(self._redis, settings.cluster,
                                wait_replicas=settings.wait_replicas,
                                wait_timeout_ms=settings.redis_wait_timeout_ms)
        self.membership = Membership(self._redis, settings, self.member_id)
        self.ownership = Ownership(self, settings, self.app.reducers)
        self.reads = ReadServer(self.settings.partitions,
                                lambda p: held.store if (held := self.owned.get(p)) else None)

    @property
    def owned(self) -> dict[int, Owned]:
        """The partitions held here (partition → store and role); read by the read server."""
        return self.ownership.owned

    def live_members(self) -> dict[str, dict[str, Any]]:
        """The live members of the cluster with their last reports."""
        return live_members(self._redis, self.store.keys)

    def owners(self) -> dict[int, str]:
        """The owners hash (the member that last claimed each partition)."""
        return owners_of(self._redis, self.store.keys)

    # -- lifecycle ---------------------------------------------------------
    def request_stop(self, *_args: object) -> None:
        """Ask the loop to stop (safe from a signal handler)."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        """Serve until asked to stop; returns the process exit code."""
        self.settings.log_start(f"worker {self.member_id}")
        # Millions of long-lived [value, version] lists make the default
        # collector thresholds scan the heap over and over (~40% of apply time
        # measured with 1M keys); collect young objects far less often.
        gc.set_threshold(100_000, 50, 100)
        bootstrap.check_partitions(self._redis, self.settings)
        self.membership.register()
        try:
            while not self._stopping:
                try:
                    self._serve()
                except (pika.exceptions.AMQPError, OSError, BrokerError) as exc:
                    # BrokerError too: right after a RabbitMQ restart, declaring
                    # the streams fails ("home node … is down") until they recover.
                    if self._stopping:
                        break
                    log.warning("lost RabbitMQ (%r); reconnecting", exc)
                    self._drop_connection()
                    time.sleep(self.settings.reconnect_backoff_s)
                except StoreUnavailable as exc:
                    log.warning("Redis unavailable (%s); retrying", exc)
                    self._drop_connection()
                    time.sleep(self.settings.reconnect_backoff_s)
            self.ownership.flush_all(final=True)
        finally:
            self._drop_connection()
            self.membership.deregister()
            self._redis.close()
        log.info("worker %s stopped", self.member_id)
        return 0

    def _serve(self) -> None:
        conn = connect_blocking(self.settings, name=f"liftline-worker-{self.member_id}",
                                nodes=self._nodes)
        self._connection = conn
        bootstrap.declare(conn.channel(), self.settings)
        self.reads.attach(conn.channel(), self.names.rpc_queue(self.member_id))
        for partition, held in self.owned.items():
            self.consume(partition, held.store)
        self.membership.beat(self.report())
        self.ownership.rebalance()
        flush_every = self.settings.flush_interval_ms / 1000.0
        next_flush = time.monotonic() + flush_every
        while not self._stopping:
            conn.process_data_events(time_limit=0.01)
            self._ack()
            now = time.monotonic()
            self._revive_consumers(now)
            if now >= next_flush or \
                    self.ownership.pending_writes() >= self.settings.flush_max_writes:
                self.ownership.flush_all()
                next_flush = now + flush_every
            if self.membership.due(now):
                self.membership.beat(self.report())
                self.ownership.rebalance()
            self.reads.serve_parked(now)
        self._cancel_consumers()

    def _drop_connection(self) -> None:
        conn, self._connection = self._connection, None
        self.reads.detach()
        # Their channels belong to the lost connection; _serve consumes afresh.
        self.consumers.clear()
        if conn is not None and conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                conn.close()

    # -- consuming -----------------------------------------------------------
    def consume(self, partition: int, store: PartitionStore) -> None:
        """Apply the partition's stream to ``store`` from just after its applied offset.

        Without a connection this does nothing: on connecting, the worker
        consumes every partition it holds. Each partition has a channel of its
        own: a stream consumer is stopped by closing its channel, because
        cancelling it would make pika reject the prefetched messages, which a
        stream refuses by closing the connection.
        """
        previous = self.consumers.get(partition)
        failures = previous.failures if previous is not None else 0
        self.stop_consuming(partition)
        if self._connection is None or not self._connection.is_open:
            return
        channel = self._connection.channel()
        channel.basic_qos(prefetch_count=self.settings.prefetch)
        consumer = Consumer(channel, failures=failures)

        def on_batch(ch: Any, method: Any, props: Any, body: bytes) -> None:
            consumer.last_tag = method.delivery_tag
            consumer.failures = 0
            self._apply(partition, store, props, body)

        channel.basic_consume(
            self.names.stream(partition), on_batch,
            arguments={"x-stream-offset": store.applied_offset + 1},
        )
        self.consumers[partition] = consumer

    def _revive_consumers(self, now: float) -> None:
        """Consume again the partitions whose consumer channel the broker closed.

        A stream member that restarts, or a leader change, can end a consumer
        ("does not have a replica on the local node" for a few seconds after a
        node comes back); after _REVIVE_LIMIT closes in a row the worker moves to
        another node (BrokerError: the run loop reconnects).
        """
        for partition, consumer in list(self.consumers.items()):
            if consumer.channel.is_open:
                continue
            held = self.owned.get(partition)
            if held is None:
                self.consumers.pop(partition, None)
                continue
            if not consumer.revive_at:
                consumer.failures += 1
                consumer.revive_at = now + _REVIVE_AFTER_S
                log.warning("partition %d: the broker closed its stream consumer (%s)", partition,
                            getattr(consumer.channel, "_closing_reason", None))
                if consumer.failures > _REVIVE_LIMIT:
                    raise BrokerError(f"partition {partition}: its stream consumer was closed "
                                      f"{consumer.failures - 1} times in a row")
            elif now >= consumer.revive_at:
                self.consume(partition, held.store)  # the new consumer keeps the count

    def stop_consuming(self, partition: int) -> None:
        """Stop the partition's consumer, if it has one; what was in flight is dropped."""
        consumer = self.consumers.pop(partition, None)
        if consumer is None:
            return
        channel = consumer.channel
        close_without_cancel(channel)  # a cancel would nack, and a stream refuses nacks

    def _cancel_consumers(self) -> None:
        for partition in list(self.consumers):
            self.stop_consuming(partition)

    def _apply(self, partition: int, store: PartitionStore, props: Any, body: bytes) -> None:
        offset = int(props.headers["x-stream-offset"])
        if offset <= store.applied_offset:
            return
        try:
            producer_id, first_seq, writes = codec.unpack_batch(body)
        except InvalidMessage as exc:
            log.error("partition %d offset %d: dead letter: %s", partition, offset, exc)
            store.dead_letter(offset, str(exc), raw=body[:256])
            store.applied_offset = offset
            store.pending_writes += 1
            return
        store.apply_batch(offset, producer_id, first_seq, writes)

    def _ack(self) -> None:
        # Stream acks only return prefetch credit; one per channel per loop turn.
        for consumer in self.consumers.values():
            if consumer.last_tag > consumer.acked_tag:
                consumer.channel.basic_ack(consumer.last_tag, multiple=True)
                consumer.acked_tag = consumer.last_tag

    def report(self) -> dict[int, Any]:
        """Per held partition: role, applied/flushed offsets, keys, epoch (for status)."""
        return self.ownership.report()


def run_worker(settings: Settings, app: App | None = None, *, partitions: bool = True,
               jobs: bool = True, concurrency: int = 4, pool: str = "threads") -> int:
    """Run partition duty and/or the job runner in this process until SIGTERM.

    Order of a graceful stop: the partition worker stops consuming, flushes and
    deregisters; the job runner stops taking jobs and finishes (or hands back)
    the running ones; exit 0.
    """
    from liftline.jobs.runner import JobRunner

    app = app or App()
    member_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
    runner = JobRunner(settings, app, member_id, concurrency=concurrency,
                       pool=pool) if jobs else None
    if not partitions:
        assert runner is not None
        signal.signal(signal.SIGTERM, runner.request_stop)
        signal.signal(signal.SIGINT, runner.request_stop)
        settings.log_start(f"job worker {member_id}")
        runner.run()
        return 0
    worker = Worker(settings, app, member_id)
    worker.install_signal_handlers()
    if runner is not None:
        runner.start()
    try:
        return worker.run()
    finally:
        if runner is not None:
            runner.stop()
