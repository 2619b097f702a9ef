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

import functools
import logging
import os
import threading
import time
import weakref
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from liftline import codec
from liftline.app import App
from liftline.cluster import bootstrap
from liftline.errors import InvalidWrite, LiftlineError, Timeout
from liftline.jobs.client import JobClient, JobHandle
from liftline.partitioning import partition_for
from liftline.producer.futures import Segment, WriteFuture, WriteFutures
from liftline.queue.batch import Batch
from liftline.queue.loops import LoopDriver
from liftline.queue.publisher import ConfirmingPublisher
from liftline.settings import Settings
from liftline.tickets import Ticket, new_producer_id

log = logging.getLogger(__name__)

# Every Producer of this process: a forked child marks them unusable (their
# connection and I/O thread stayed in the parent). Cheaper than os.getpid() per write.
_LIVE: weakref.WeakSet[Producer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for producer in list(_LIVE):
        producer._refusal = "a Producer cannot be used after fork; create one per process"


os.register_at_fork(after_in_child=_after_fork_in_child)


class Producer:
    """Sends keyed writes to a liftline cluster.

    Every method that writes returns only after RabbitMQ confirmed the write
    (the ``submit`` family returns a :class:`WriteFuture` at once instead).
    Writes to one key are applied in the order this producer sent them.
    ``max_buffered`` bounds the writes not yet confirmed or failed: past it a write
    waits for confirms, up to ``confirm_timeout_s``, then raises Timeout.
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
        self._max_writes = self.settings.batch_max_writes
        # Room for the batch envelope (version, producer id, first seq, array header).
        self._max_bytes = self.settings.batch_max_bytes - 256
        self._linger_zero = self.settings.linger_ms == 0
        # None while writes are taken; else why not (closed, or used after a fork).
        self._refusal: str | None = None
        self._open: list[Batch | None] = [None] * self._partitions
        self._sealed: list[Batch] = []
        # Every batch not known to be settled, oldest first: flush waits for these,
        # including the ones the publisher already took.
        self._unsettled: deque[Batch] = deque()
        self._next_seq = [1] * self._partitions
        # Writes placed in batches, and those of them in batches settled since: the
        # difference is what max_buffered bounds. _placed changes under the lock;
        # _settled only on the publisher's thread, which settles every batch, so
        # settling takes the lock only to wake a writer waiting for room.
        self._placed = 0
        self._settled = 0
        self._space_waiters = 0
        # Writes submit() took and nobody placed in a batch yet: their futures, each
        # carrying its partition and packed write until placed.
        self._staged: deque[WriteFuture] = deque()
        self._place_bound = self._place_now  # one bound method for every future
        self._staged_at = 0.0  # when the staged writes began to pile up (monotonic)
        _LIVE.add(self)
        self._jobs: JobClient | None = None
        if declare:
            self._prepare_cluster()
        self._publisher = ConfirmingPublisher(
            self.settings, self._drain, self._give_up,
            name=f"liftline-producer-{self.producer_id}", driver=driver,
            hold_while_blocked=hold_while_blocked,
        )
        self._event_driven = self._publisher.event_driven
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
        if self.app is not None:
            self._check_op(op)
        packed = codec.pack_write(op, key, value, arg)
        partition = partition_for(key, self._partitions)
        if self._refusal is not None:
            raise LiftlineError(self._refusal)
        staged = self._staged
        if len(staged) + self._placed - self._settled >= self._max_buffered:
            with self._lock:
                self._place_staged()
                self._admit()
        # Staged, not placed: no lock per write. Threads that share a Producer and
        # took its lock for every write stalled each other whenever the GIL switched
        # away from the holder (4 threads ran at 0.37x one). A deque append is atomic,
        # so the staged writes keep the order in which they were submitted; the
        # publisher's thread (or the first caller to ask a future) places them in
        # batches and numbers them, under the lock, in that order.
        future = WriteFuture(None, None, self._place_bound, partition, packed)
        if not staged:  # the linger of the batches these writes go into starts now
            self._staged_at = time.monotonic()
        staged.append(future)
        if self._event_driven or self._linger_zero:
            self._place_now()
        elif len(staged) >= self._max_writes:
            # Only if the lock is free: the holder, or the publisher's next turn, places
            # them otherwise. Submitters that queued for the lock here kept the
            # publisher's thread from it for seconds (a lock is not handed out in turn;
            # 1,000,000 writes from 16 threads: its timers up to 1.9 s late, waiting in
            # _drain, and its channel given up for a stall of its own making).
            self._place_now(wait=False)
        return future

    def _place_now(self, wait: bool = True) -> None:
        """Place the staged writes (from any thread but the publisher's); with
        ``wait=False`` only if the lock is free."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            wake, opened = self._place_staged()
        finally:
            self._lock.release()
        if wake or self._linger_zero:
            self._publisher.wake()
        if opened:
            self._publisher.batch_opened()

    def _place_staged(self) -> tuple[bool, bool]:
        """Under the lock: put the staged writes into their partitions' batches, in the
        order they were submitted; returns (a batch is full or sealed: wake the
        publisher, a batch was opened)."""
        staged, opened_any, wake = self._staged, False, False
        max_writes, max_bytes, open_ = self._max_writes, self._max_bytes, self._open
        while staged:
            future = staged.popleft()
            partition, packed = future._partition, future._packed
            assert packed is not None
            future._packed = None
            size = len(packed)
            batch = open_[partition]
            if batch is None or batch.size + size > max_bytes:
                # A full batch goes out without lingering; so do those a renewal seals.
                wake = self._renew_if_due() or batch is not None or wake
                batch = self._new_batch(partition)
                batch.created = min(batch.created, self._staged_at)
                opened_any = True
            future._seq = batch.first_seq + len(batch.writes)
            future._batch = batch
            batch.writes.append(packed)
            batch.size += size
            self._placed += 1
            if len(batch.writes) >= max_writes:
                self._seal(partition, batch)
                wake = True
        return wake, opened_any

    def submit_many(self, writes: Iterable[Sequence[Any]]) -> WriteFutures:
        """Queue many writes in one call; returns their futures (a sequence) at once.

        Each write is ``(op, key, value)`` or ``(op, key, value, arg)``, as for
        :meth:`submit`. Every write is checked and packed before any is queued: one
        bad write raises InvalidWrite (naming its index) and sends none of them.
        The call takes the Producer's lock once, so the writes of a partition get
        consecutive sequence numbers in the list's order and no other thread's write
        comes between them. Each write's future resolves only after RabbitMQ
        confirmed its batch, as with :meth:`submit`; no object per write is made
        until one is asked for (``futures[i]``, ``futures.result()``).

        The buffer bound (``max_buffered``) is checked once per call: a call waits
        while the buffer is full, then queues all of its writes.
        """
        pack_write, place, partitions = codec.pack_write, partition_for, self._partitions
        check_op = self._check_op if self.app is not None else None
        groups: dict[int, list[bytes]] = {}
        group_bytes: dict[int, int] = {}
        parts: array[int] = array("I")
        ranks: array[int] = array("I")
        for i, write in enumerate(writes):
            try:
                if len(write) == 3:
                    op, key, value = write
                    arg = None
                else:
                    op, key, value, arg = write
                if check_op is not None:
                    check_op(op)
                packed = pack_write(op, key, value, arg)
            except InvalidWrite as exc:
                raise InvalidWrite(f"write {i}: {exc}") from exc
            except (TypeError, ValueError) as exc:
                raise InvalidWrite(f"write {i}: expected (op, key, value) or "
                                   f"(op, key, value, arg), got {write!r:.80}") from exc
            partition = place(key, partitions)
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = []
                group_bytes[partition] = 0
            ranks.append(len(group))
            group.append(packed)
            group_bytes[partition] += len(packed)
            parts.append(partition)
        segments: dict[int, list[Segment]] = {}
        with self._lock:
            wake, opened = self._place_staged()  # first: the writes submitted before
            self._admit()
            wake = self._renew_if_due() or wake  # all of the call's writes share one id
            producer_id = self.producer_id
            for partition, group in groups.items():
                segs = segments[partition] = []
                start, left_bytes = 0, group_bytes[partition]
                while start < len(group):
                    batch = self._open[partition]
                    if batch is None or len(batch.writes) >= self._max_writes \
                            or batch.size + len(group[start]) > self._max_bytes:
                        wake = wake or batch is not None
                        batch = self._new_batch(partition)
                        opened = True
                    take = len(group) - start
                    room = self._max_writes - len(batch.writes)
                    if take > room or batch.size + left_bytes > self._max_bytes:
                        take = self._fit(group, start, min(take, room), batch)
                    taken = group[start:start + take] if start or take < len(group) else group
                    taken_bytes = left_bytes if take == len(group) - start \
                        else sum(map(len, taken))
                    segs.append(Segment(start, take, batch, batch.first_seq + len(batch.writes)))
                    batch.writes.extend(taken)
                    batch.size += taken_bytes
                    start += take
                    left_bytes -= taken_bytes
                    if len(batch.writes) >= self._max_writes:
                        self._seal(partition, batch)  # full: out now, not after linger
                        wake = True
            self._placed += len(parts)
        if wake or (self._linger_zero and parts):
            self._publisher.wake()
        if opened:
            self._publisher.batch_opened()
        return WriteFutures(producer_id, parts, ranks, segments)

    def _fit(self, group: list[bytes], start: int, most: int, batch: Batch) -> int:
        """How many of ``group[start:]`` (at most ``most``, at least one) fit ``batch``."""
        room = self._max_bytes - batch.size
        n = 0
        while n < most:
            room -= len(group[start + n])
            if room < 0 and (n or batch.writes):
                break
            n += 1
        return n

    def _check_op(self, op: str) -> None:
        assert self.app is not None
        if op not in codec.BUILTIN_OPS and op not in self.app.reducers:
            raise InvalidWrite(f"unknown op {op!r}: not built in and not a reducer of the app")

    def _admit(self) -> None:
        """Under the lock, before queuing: refuse when closed or forked, and wait while
        the buffer is full."""
        if self._refusal is not None:
            raise LiftlineError(self._refusal)
        if self._placed - self._settled >= self._max_buffered:
            self._wait_for_space()

    def _renew_if_due(self) -> bool:
        """Under the lock: take a new producer id if the current one is half its window
        old; True if it did (the batches it sealed should go out)."""
        if self._renew_at > time.time():
            return False
        self._renew_id()
        return True

    def _wait_for_space(self) -> None:
        """Wait (holding the lock's condition) until the buffer has room; Timeout if not."""
        deadline = time.monotonic() + self.settings.confirm_timeout_s
        self._space_waiters += 1  # before the check: _release reads it after counting
        try:
            while self._placed - self._settled >= self._max_buffered:
                if not self._space.wait(deadline - time.monotonic()):
                    raise Timeout("producer buffer full: RabbitMQ is not confirming writes")
        finally:
            self._space_waiters -= 1
        if self._refusal is not None:
            raise LiftlineError(self._refusal)

    def _new_batch(self, partition: int) -> Batch:
        """Seal ``partition``'s open batch (if any) and open the next one (under the lock)."""
        old = self._open[partition]
        if old is not None:
            self._seal(partition, old)
        batch = self._open[partition] = Batch(partition, self._next_seq[partition],
                                              self.producer_id)
        while self._unsettled and self._unsettled[0].done:
            self._unsettled.popleft()
        self._unsettled.append(batch)
        return batch

    def _seal(self, partition: int, batch: Batch) -> None:
        self._open[partition] = None
        self._next_seq[partition] = batch.first_seq + len(batch.writes)
        self._sealed.append(batch)

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
        for partition, batch in enumerate(self._open):
            if batch is not None:
                self._seal(partition, batch)
        self.producer_id = new_producer_id()
        self._next_seq = [1] * self._partitions
        self._renew_at = time.time() + self.settings.producer_id_ttl_s / 2
        log.info("producer takes the new id %s", self.producer_id)

    # -- batching plumbing (called on the publisher's thread) --------------
    def _drain(self, everything: bool) -> list[Batch]:
        """Seal batches that lingered long enough and hand them out, packed."""
        cutoff = time.monotonic() - self.settings.linger_ms / 1000.0
        with self._lock:
            self._place_staged()
            for partition, batch in enumerate(self._open):
                if batch is not None and (everything or batch.created <= cutoff):
                    self._seal(partition, batch)
            out, self._sealed = self._sealed, []
        for batch in out:
            batch.message_id = f"{batch.producer_id}:{batch.partition}:{batch.first_seq}"
            batch.body = codec.pack_batch(batch.producer_id, batch.first_seq, batch.writes)
            # Its writes leave the buffer once it is settled, not when it is handed out:
            # max_buffered bounds what is not yet confirmed (or failed), an outage and a
            # broker that confirms slower than writes come in included.
            batch.add_done_callback(functools.partial(self._release, len(batch.writes)))
        return out

    def _release(self, writes: int, _batch: Batch) -> None:
        """A batch handed out was settled, either way (on the publisher's thread): its
        writes leave the buffer."""
        self._settled += writes
        if self._space_waiters:
            with self._lock:
                self._space.notify_all()

    def _give_up(self, error: LiftlineError) -> None:
        for batch in self._drain(True):
            batch.settle(error)

    # -- lifecycle ---------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write submitted so far is confirmed (or failed)."""
        with self._lock:
            self._place_staged()
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
            if self._refusal is not None:
                return
            self._refusal = "producer is closed"
            self._space.notify_all()
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
