"""The partition worker: consumes partition streams, applies, flushes, answers reads.

One thread owns one pika connection and the in-memory stores. Order of a
graceful stop (SIGTERM): stop consuming, flush every partition, deregister,
close, exit 0. A SIGKILL loses nothing either: Redis holds a state that equals
the stream folded up to the flushed offset, and a restart replays from there.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

from liftline import codec
from liftline.app import App
from liftline.errors import (
    BrokerUnavailable,
    Fenced,
    InvalidMessage,
    LiftlineError,
    StoreError,
    StoreUnavailable,
)
from liftline.queue import topology
from liftline.queue.connection import connect_blocking
from liftline.settings import Settings
from liftline.store.memory import PartitionStore
from liftline.store.redis_store import RedisStore, connect
from liftline.workers.membership import Membership
from liftline.workers.rpc import ReadServer

log = logging.getLogger(__name__)


@dataclass
class Owned:
    """A partition this worker holds: its store, epoch and consumer."""

    store: PartitionStore
    epoch: int
    flushed_offset: int
    consumer_tag: str = ""
    flushed_at: float = field(default_factory=time.monotonic)


class Worker:
    """Owns partitions: applies their streams and persists them to Redis."""

    def __init__(self, settings: Settings, app: App | None = None,
                 member_id: str | None = None) -> None:
        self.settings = settings
        self.app = app or App()
        self.member_id = member_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.names = topology.Names(settings.cluster)
        self.owned: dict[int, Owned] = {}
        self._stopping = False
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._tag_partition: dict[str, int] = {}
        self._last_tag = 0
        self._acked_tag = 0
        self._redis = connect(settings.redis_url)
        self.store = RedisStore(self._redis, settings.cluster)
        self.membership = Membership(self._redis, settings, self.member_id)
        self.reads = ReadServer(self)

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
        self.store.ensure_cluster(self.settings.partitions)
        self.membership.register()
        try:
            while not self._stopping:
                try:
                    self._serve()
                except (pika.exceptions.AMQPError, OSError, BrokerUnavailable) as exc:
                    if self._stopping:
                        break
                    log.warning("lost RabbitMQ (%r); reconnecting", exc)
                    self._drop_connection()
            self._flush_all(force=True)
        finally:
            self._drop_connection()
            self.membership.deregister()
            self._redis.close()
        log.info("worker %s stopped", self.member_id)
        return 0

    def _serve(self) -> None:
        conn = connect_blocking(self.settings, name=f"liftline-worker-{self.member_id}")
        self._connection = conn
        topology.declare(conn.channel(), self.settings)
        self._channel = conn.channel()
        self._channel.basic_qos(prefetch_count=self.settings.prefetch)
        self._tag_partition.clear()
        self._last_tag = self._acked_tag = 0
        self.reads.attach(conn.channel(), self.names.rpc_queue(self.member_id))
        wanted = self.membership.wanted_partitions()
        for partition in list(self.owned):
            if partition not in wanted:
                self._release(partition)
        for partition in wanted:
            if partition in self.owned:
                self._consume(partition)
            else:
                self._take(partition)
        next_flush = time.monotonic() + self.settings.flush_interval_ms / 1000.0
        while not self._stopping:
            conn.process_data_events(time_limit=0.01)
            self._ack()
            now = time.monotonic()
            if now >= next_flush or self._pending() >= self.settings.flush_max_writes:
                self._flush_all()
                next_flush = now + self.settings.flush_interval_ms / 1000.0
            if self.membership.due(now):
                self.membership.beat(self._report())
            self.reads.serve_parked(now)
        self._cancel_consumers()

    def _drop_connection(self) -> None:
        conn, self._connection, self._channel = self._connection, None, None
        self.reads.detach()
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    # -- partitions ----------------------------------------------------------
    def _take(self, partition: int) -> None:
        """Become the owner: bump the epoch, load the snapshot, replay the tail."""
        epoch = self.store.claim(partition, self.member_id)
        started = time.monotonic()
        data, offset, watermarks = self.store.load(partition)
        store = PartitionStore(partition, reducers=self.app.reducers,
                               append_cap=self.settings.append_cap)
        store.load(data, offset, watermarks)
        self.owned[partition] = Owned(store, epoch, offset)
        log.info("took partition %d at epoch %d: %d keys, offset %d, loaded in %.3fs",
                 partition, epoch, len(data), offset, time.monotonic() - started)
        self._consume(partition)

    def _consume(self, partition: int) -> None:
        owned = self.owned[partition]
        start = owned.store.applied_offset + 1
        tag = self._channel.basic_consume(
            self.names.stream(partition), self._on_batch,
            arguments={"x-stream-offset": start},
        )
        owned.consumer_tag = tag
        self._tag_partition[tag] = partition

    def _release(self, partition: int) -> None:
        owned = self.owned.pop(partition, None)
        if owned is None:
            return
        self._tag_partition.pop(owned.consumer_tag, None)
        if self._channel is not None and owned.consumer_tag:
            try:
                self._channel.basic_cancel(owned.consumer_tag)
            except (pika.exceptions.AMQPError, OSError):
                pass
        log.warning("released partition %d", partition)

    def _cancel_consumers(self) -> None:
        for owned in self.owned.values():
            if owned.consumer_tag and self._channel is not None:
                self._channel.basic_cancel(owned.consumer_tag)
        self._ack()

    # -- applying --------------------------------------------------------------
    def _on_batch(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        self._last_tag = method.delivery_tag
        partition = self._tag_partition.get(method.consumer_tag)
        if partition is None:
            return
        store = self.owned[partition].store
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
        if self._last_tag > self._acked_tag and self._channel is not None:
            self._channel.basic_ack(self._last_tag, multiple=True)
            self._acked_tag = self._last_tag

    def _pending(self) -> int:
        return sum(o.store.pending_writes for o in self.owned.values())

    # -- persistence -------------------------------------------------------
    def _flush_all(self, force: bool = False) -> None:
        for partition in list(self.owned):
            owned = self.owned[partition]
            store = owned.store
            if store.applied_offset == owned.flushed_offset and not store.dead and not force:
                continue
            if store.applied_offset == owned.flushed_offset and not store.dirty and not store.dead:
                continue
            batch = store.take_flush()
            try:
                self.store.flush(batch, owned.epoch)
            except Fenced as exc:
                log.error("%s; dropping the partition", exc)
                self._release(partition)
                continue
            except StoreUnavailable as exc:
                store.restore_unflushed(batch)
                log.warning("flush of partition %d postponed: %s", partition, exc)
                return
            except StoreError:
                store.restore_unflushed(batch)
                raise
            owned.flushed_offset = batch.offset
            owned.flushed_at = time.monotonic()

    def _report(self) -> dict[str, Any]:
        return {
            p: {
                "applied": o.store.applied_offset,
                "flushed": o.flushed_offset,
                "keys": len(o.store.data),
                "epoch": o.epoch,
            }
            for p, o in self.owned.items()
        }


def run_worker(settings: Settings, app: App | None = None) -> int:
    """Run one worker in this process until SIGTERM; returns the exit code."""
    worker = Worker(settings, app)
    worker.install_signal_handlers()
    try:
        return worker.run()
    except LiftlineError:
        raise
