"""Futures of writes, settled with the batches that carry them.

:class:`WriteFuture` is the outcome of one write (``Producer.submit``).
:class:`WriteFutures` is the outcome of a list of writes (``Producer.submit_many``):
it holds no object per write, only two integer arrays and the batches, and makes
a WriteFuture or a Ticket for a write only when one is asked for.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, overload

from liftline.errors import LiftlineError, Timeout
from liftline.queue.batch import Batch
from liftline.tickets import Ticket


class WriteFuture:
    """The outcome of one write: its Ticket once confirmed, or the error.

    A write :meth:`Producer.submit` staged is placed in a batch (and given its
    sequence number) a moment later, by the publisher's thread or by whoever asks
    this future first: ``ticket``, ``batch`` and ``result`` place it if need be.
    Until then it carries the write itself (``_partition``, ``_packed``): a staged
    write is this one object, since every object alive per write costs the garbage
    collector's passes over a heap of waiting futures (most of ``submit``'s time).
    ``place`` is one callable shared by all the futures of a Producer.
    """

    __slots__ = ("_batch", "_seq", "_ticket", "_place", "_partition", "_packed")

    def __init__(self, batch: Batch | None, ticket: Ticket | None = None,
                 place: Callable[[], None] | None = None, partition: int = 0,
                 packed: bytes | None = None) -> None:
        self._batch = batch
        self._ticket = ticket
        self._seq = 0
        self._place = place
        self._partition = partition
        self._packed = packed

    def _placed(self) -> Batch:
        if self._batch is None:
            assert self._place is not None
            self._place()
            assert self._batch is not None
        return self._batch

    @property
    def ticket(self) -> Ticket:
        """The write's (partition, producer id, seq), known once it is placed."""
        if self._ticket is None:
            batch = self._placed()
            self._ticket = Ticket(batch.partition, batch.producer_id, self._seq)
        return self._ticket

    @property
    def batch(self) -> Batch:
        """The batch that carries this write (shared with the other writes in it)."""
        return self._placed()

    def result(self, timeout: float | None = None) -> Ticket:
        """The ticket once RabbitMQ confirmed the write; raises its error otherwise."""
        self._placed().wait(timeout)
        return self.ticket

    def done(self) -> bool:
        batch = self._batch
        return batch is not None and batch.done

    def exception(self, timeout: float | None = None) -> LiftlineError | None:
        try:
            self._placed().wait(timeout)
        except LiftlineError as exc:
            return exc
        return None


class Segment:
    """``count`` writes, from ``start_rank`` on, of one partition's share of a submit_many
    call that went into ``batch``, the first of them with sequence number ``first_seq``."""

    __slots__ = ("start_rank", "count", "batch", "first_seq")

    def __init__(self, start_rank: int, count: int, batch: Batch, first_seq: int) -> None:
        self.start_rank = start_rank
        self.count = count
        self.batch = batch
        self.first_seq = first_seq


class Share(NamedTuple):
    """The writes of one submit_many call that went to one partition: ``writes`` of them,
    with the sequence numbers ``first_seq`` … ``first_seq + writes - 1``, in ``batches``
    (published and confirmed in that order)."""

    partition: int
    writes: int
    first_seq: int
    batches: list[Batch]


class WriteFutures(Sequence[WriteFuture]):
    """The outcome of the writes of one ``submit_many`` call, in the order given.

    Write ``i`` is the ``ranks[i]``-th write of the call to partition
    ``partitions[i]``; a partition's writes of the call have consecutive sequence
    numbers and lie in one or more batches (its segments). Nothing per write is a
    Python object until asked for: ``futures[i]`` makes that write's WriteFuture,
    :meth:`tickets` and :meth:`result` make the Tickets.
    """

    __slots__ = ("producer_id", "_partitions", "_ranks", "_segments", "_batches")

    def __init__(self, producer_id: str, partitions: array[int], ranks: array[int],
                 segments: dict[int, list[Segment]]) -> None:
        self.producer_id = producer_id
        self._partitions = partitions
        self._ranks = ranks
        self._segments = segments
        seen: dict[int, Batch] = {}
        for segs in segments.values():
            for seg in segs:
                seen.setdefault(id(seg.batch), seg.batch)
        self._batches = list(seen.values())

    def __len__(self) -> int:
        return len(self._partitions)

    def _locate(self, index: int) -> tuple[int, int, Batch]:
        partition, rank = self._partitions[index], self._ranks[index]
        segs = self._segments[partition]
        seg = segs[0] if len(segs) == 1 else \
            segs[bisect_right([s.start_rank for s in segs], rank) - 1]
        return partition, seg.first_seq + rank - seg.start_rank, seg.batch

    @overload
    def __getitem__(self, index: int) -> WriteFuture: ...

    @overload
    def __getitem__(self, index: slice) -> list[WriteFuture]: ...

    def __getitem__(self, index: int | slice) -> WriteFuture | list[WriteFuture]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        partition, seq, batch = self._locate(range(len(self))[index])
        return WriteFuture(batch, Ticket(partition, self.producer_id, seq))

    def __iter__(self) -> Iterator[WriteFuture]:
        for i in range(len(self)):
            yield self[i]

    @property
    def batches(self) -> list[Batch]:
        """The distinct batches that carry these writes."""
        return list(self._batches)

    def shares(self) -> list[Share]:
        """Per partition the call wrote to: how many writes, their seqs and batches."""
        return [Share(p, sum(s.count for s in segs), segs[0].first_seq,
                      [s.batch for s in segs]) for p, segs in self._segments.items()]

    def tickets(self) -> list[Ticket]:
        """Every write's Ticket, in order: known at once, proof of nothing until confirmed."""
        producer_id = self.producer_id
        ranks = self._ranks
        # The first seq of each partition's first segment; writes past a segment's end
        # (a partition split over several batches) take the slow path.
        simple = {p: (segs[0].first_seq, segs[1].start_rank if len(segs) > 1 else None)
                  for p, segs in self._segments.items()}
        out: list[Ticket] = []
        append = out.append
        for i, partition in enumerate(self._partitions):
            first, end = simple[partition]
            rank = ranks[i]
            if end is None or rank < end:
                append(Ticket(partition, producer_id, first + rank))
            else:
                append(Ticket(partition, producer_id, self._locate(i)[1]))
        return out

    def done(self) -> bool:
        """True once every batch is settled (confirmed or failed)."""
        return all(batch.done for batch in self._batches)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every write is settled; raises Timeout if that takes longer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for batch in self._batches:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not batch.wait_done(left):
                raise Timeout(f"writes not confirmed within {timeout}s (they may still be)")

    def exception(self, timeout: float | None = None) -> LiftlineError | None:
        """The first failure among the writes (None if every one was confirmed), or the
        Timeout if they were not all settled in time."""
        try:
            self.wait(timeout)
        except Timeout as exc:
            return exc
        return next((b.error for b in self._batches if b.error is not None), None)

    def result(self, timeout: float | None = None) -> list[Ticket]:
        """Every write's Ticket once all are confirmed; raises the first failure otherwise
        (``futures[i].exception(0)`` tells which writes it hit)."""
        error = self.exception(timeout)
        if error is not None:
            raise error
        return self.tickets()

    def failed(self) -> list[int]:
        """Indices of the writes whose batch failed (of those settled so far)."""
        bad = {id(b) for b in self._batches if b.done and b.error is not None}
        if not bad:
            return []
        return [i for i in range(len(self)) if id(self._locate(i)[2]) in bad]
