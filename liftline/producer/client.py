"""The Producer: validated, batched, confirmed writes.

Writes are grouped per partition for up to ``linger_ms`` (or until a batch is
full) and published as one stream message. A write's future resolves to its
Ticket only once RabbitMQ confirmed the batch; a nack, a return or a lost
connection that outlives the retry budget fails it. Thread-safe: any number of
threads may write through one Producer.

By default the publisher runs on a thread of its own. Given ``driver=AsyncioLoop(loop)``
it runs on that asyncio loop instead (the HTTP ingest service): then submit on the
loop's thread and await batches through ``Batch.add_done_callback``; the blocking
helpers (``write``, ``flush``, ``close``) are for the threaded mode only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

from liftline import codec
from liftline.app import App
from liftline.cluster import bootstrap
from liftline.errors import InvalidWrite, LiftlineError, Timeout
from liftline.jobs.client import JobClient, JobHandle
from liftline.partitioning import partition_for
from liftline.producer.futures import WriteFuture
from liftline.queue.batch import Batch
from liftline.queue.loops import LoopDriver
from liftline.queue.publisher import ConfirmingPublisher
from liftline.settings import Settings
from liftline.tickets import Ticket, new_producer_id

log = logging.getLogger(__name__)


class Producer:
    """Sends keyed writes to a liftline cluster.

    Every method that writes returns only after RabbitMQ confirmed the write
    (the ``submit`` family returns a :class:`WriteFuture` at once instead).
    Writes to one key are applied in the order this producer sent them.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: App | None = None,
        producer_id: str | None = None,
        max_buffered: int = 200_000,
        declare: bool = True,
        driver: LoopDriver | None = None,
        hold_while_blocked: bool = False,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.app = app
        # An id of the Producer's own carries its creation time, and the Producer
        # takes a new one halfway through producer_id_ttl_s (workers expire ids by
        # age; the other half is the time a retried batch has left to arrive).
        # An id the caller gives is kept for the Producer's life and never expires.
        self.producer_id = producer_id or new_producer_id()
        self._renew_at = (time.time() + self.settings.producer_id_ttl_s / 2
                          if producer_id is None else float("inf"))
        self._partitions = self.settings.partitions
        self._max_buffered = max_buffered
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._open: dict[int, Batch] = {}
        self._sealed: list[Batch] = []
        # Every batch not known to be settled, oldest first: flush waits for these,
        # including the ones the publisher already took.
        self._unsettled: deque[Batch] = deque()
        self._next_seq = [1] * self._partitions
        self._buffered = 0
        self._closed = False
        self._pid = os.getpid()
        self._jobs: JobClient | None = None
        if declare:
            self._prepare_cluster()
        self._publisher = ConfirmingPublisher(
            self.settings, self._drain, self._give_up,
            name=f"liftline-producer-{self.producer_id}", driver=driver,
            hold_while_blocked=hold_while_blocked,
        )
        self._publisher.start()

    def _prepare_cluster(self) -> None:
        bootstrap.prepare(self.settings, name="liftline-producer-setup")

    @property
    def publisher(self) -> ConfirmingPublisher:
        """The publisher (its ``connected`` event and ``blocked`` flag tell its state)."""
        return self._publisher

    # -- writes ------------------------------------------------------------
    def submit(self, op: str, key: str, value: Any = None, arg: Any = None) -> WriteFuture:
        """Queue one write; returns its future at once. Raises InvalidWrite for bad input."""
        if self.app is not None and op not in codec.BUILTIN_OPS and op not in self.app.reducers:
            raise InvalidWrite(f"unknown op {op!r}: not built in and not a reducer of the app")
        packed = codec.pack_write(op, key, value, arg)
        partition = partition_for(key, self._partitions)
        wake = opened = False
        with self._lock:
            if self._closed:
                raise LiftlineError("producer is closed")
            if os.getpid() != self._pid:
                raise LiftlineError("a Producer cannot be used after fork; create one per process")
            deadline = time.monotonic() + self.settings.confirm_timeout_s
            while self._buffered >= self._max_buffered:
                if not self._space.wait(deadline - time.monotonic()):
                    raise Timeout("producer buffer full: RabbitMQ is not confirming writes")
            batch = self._open.get(partition)
            if batch is not None and (
                len(batch.writes) >= self.settings.batch_max_writes
                or batch.size + len(packed) > self.settings.batch_max_bytes - 256
            ):
                self._sealed.append(self._open.pop(partition))
                batch, wake = None, True
            if batch is None:
                if self._renew_at <= time.time():
                    self._renew_id()
                    wake = True
                batch = self._open[partition] = Batch(partition, self._next_seq[partition],
                                                      self.producer_id)
                opened = True
                while self._unsettled and self._unsettled[0].done:
                    self._unsettled.popleft()
                self._unsettled.append(batch)
            seq = batch.first_seq + len(batch.writes)
            batch.writes.append(packed)
            batch.size += len(packed)
            self._next_seq[partition] = seq + 1
            self._buffered += 1
            if self.settings.linger_ms == 0:
                wake = True
        if wake:
            self._publisher.wake()
        if opened:
            self._publisher.batch_opened()
        return WriteFuture(batch, Ticket(partition, batch.producer_id, seq))

    def write(self, op: str, key: str, value: Any = None, arg: Any = None,
              timeout: float | None = None) -> Ticket:
        """One write, waiting for its confirm; returns the Ticket."""
        wait = self.settings.confirm_timeout_s + 5 if timeout is None else timeout
        return self.submit(op, key, value, arg).result(wait)

    def put(self, key: str, value: Any) -> Ticket:
        """Set ``key`` to ``value``."""
        return self.write("set", key, value)

    def delete(self, key: str) -> Ticket:
        return self.write("delete", key)

    def incr(self, key: str, amount: int | float = 1) -> Ticket:
        """Add ``amount`` to a numeric value (absent counts as 0)."""
        return self.write("incr", key, amount)

    def merge(self, key: str, fields: dict[str, Any]) -> Ticket:
        """Shallow-merge ``fields`` into a dict value (absent counts as {})."""
        return self.write("merge", key, fields)

    def append(self, key: str, item: Any, cap: int | None = None) -> Ticket:
        """Append to a list value, keeping at most ``cap`` newest items."""
        return self.write("append", key, item, cap)

    def setnx(self, key: str, value: Any) -> Ticket:
        """Set ``key`` only if it is absent when the write is applied."""
        return self.write("setnx", key, value)

    def cas(self, key: str, value: Any, expected_version: int) -> Ticket:
        """Set ``key`` only if its version is ``expected_version`` when applied (0 = absent)."""
        return self.write("cas", key, value, expected_version)

    # -- jobs --------------------------------------------------------------
    def enqueue(self, name: str, *, key: str | None = None, job_id: str | None = None,
                **args: Any) -> JobHandle:
        """Submit the background job ``name`` with keyword ``args``; returns once
        RabbitMQ confirmed it. See :meth:`liftline.jobs.client.JobClient.enqueue`."""
        with self._lock:
            if self._jobs is None:
                self._jobs = JobClient(self.settings, self.app)
            jobs = self._jobs
        return jobs.enqueue(name, key=key, job_id=job_id, **args)

    def _renew_id(self) -> None:
        """Take a fresh producer id (under the lock): open batches are sealed under
        the old one, and sequence numbers start again at 1."""
        self._sealed.extend(self._open.values())
        self._open.clear()
        self.producer_id = new_producer_id()
        self._next_seq = [1] * self._partitions
        self._renew_at = time.time() + self.settings.producer_id_ttl_s / 2
        log.info("producer takes the new id %s", self.producer_id)

    # -- batching plumbing (called on the publisher's thread) --------------
    def _drain(self, everything: bool) -> list[Batch]:
        """Seal batches that lingered long enough and hand them out, packed."""
        cutoff = time.monotonic() - self.settings.linger_ms / 1000.0
        with self._lock:
            for partition, batch in list(self._open.items()):
                if everything or batch.created <= cutoff:
                    self._sealed.append(self._open.pop(partition))
            out, self._sealed = self._sealed, []
            released = sum(len(b.writes) for b in out)
            self._buffered -= released
            if released:
                self._space.notify_all()
        for batch in out:
            batch.message_id = f"{batch.producer_id}:{batch.partition}:{batch.first_seq}"
            batch.body = codec.pack_batch(batch.producer_id, batch.first_seq, batch.writes)
        return out

    def _give_up(self, error: LiftlineError) -> None:
        for batch in self._drain(True):
            batch.settle(error)

    # -- lifecycle ---------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write submitted so far is confirmed (or failed)."""
        with self._lock:
            pending = [batch for batch in self._unsettled if not batch.done]
        self._publisher.wake()
        deadline = None if timeout is None else time.monotonic() + timeout
        for batch in pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                batch.wait(left)
            except Timeout:
                raise
            except LiftlineError:
                pass  # reported through that write's future

    def close(self, timeout: float = 30.0) -> None:
        """Publish what is buffered, wait for confirms, and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
        finally:
            self._publisher.stop(timeout)
            if self._jobs is not None:
                self._jobs.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
