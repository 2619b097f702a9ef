"""Tickets and the futures that deliver them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from liftline.errors import InvalidWrite, LiftlineError, Timeout

# Guards Batch._callbacks between a settling thread and one adding a callback.
_CALLBACKS_LOCK = threading.Lock()


class Ticket(NamedTuple):
    """Proof that RabbitMQ confirmed a write: where it is and its sequence number."""

    partition: int
    producer_id: str
    seq: int

    def __str__(self) -> str:
        return f"{self.partition}.{self.producer_id}.{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Ticket:
        """The ticket written as ``partition.producer_id.seq``; InvalidWrite otherwise."""
        # The producer id may hold dots: the partition is before the first, seq after the last.
        head, _, rest = text.strip().partition(".")
        producer_id, _, tail = rest.rpartition(".")
        try:
            partition, seq = int(head), int(tail)
        except ValueError as exc:
            raise InvalidWrite(f"not a ticket: {text!r} (expected partition.producer.seq)") from exc
        if partition < 0 or seq < 1 or not producer_id:
            raise InvalidWrite(f"not a ticket: {text!r} (expected partition.producer.seq)")
        return cls(partition, producer_id, seq)


class Batch:
    """Writes of one partition that travel as one AMQP message.

    Every write future of the batch waits on its one event: one confirm settles
    all of them.
    """

    __slots__ = ("partition", "first_seq", "writes", "size", "created", "sent_at",
                 "body", "message_id", "returned", "error", "done", "_event", "_callbacks")

    def __init__(self, partition: int, first_seq: int) -> None:
        self.partition = partition
        self.first_seq = first_seq
        self.writes: list[bytes] = []
        self.size = 0
        self.created = time.monotonic()
        self.sent_at = 0.0
        self.body = b""
        self.message_id = ""
        self.returned = False
        self.error: LiftlineError | None = None
        self.done = False
        self._event = threading.Event()
        self._callbacks: list[Callable[[Batch], None]] | None = None

    def settle(self, error: LiftlineError | None = None) -> None:
        if self.done:
            return
        self.error = error
        self.body = b""
        self.writes = []
        with _CALLBACKS_LOCK:
            self.done = True
            callbacks, self._callbacks = self._callbacks, None
        self._event.set()
        for fn in callbacks or ():
            fn(self)

    def add_done_callback(self, fn: Callable[[Batch], None]) -> None:
        """Call ``fn(batch)`` once the batch is settled (at once if it already is).

        ``fn`` runs on the thread that settles the batch: the publisher's I/O
        thread, or the event loop of an asyncio-driven publisher. It must not block.
        """
        with _CALLBACKS_LOCK:
            if not self.done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)

    def wait(self, timeout: float | None) -> None:
        if not self._event.wait(timeout):
            raise Timeout(f"write not confirmed within {timeout}s (it may still be)")
        if self.error is not None:
            raise self.error


class WriteFuture:
    """The outcome of one write: its Ticket once confirmed, or the error."""

    __slots__ = ("_batch", "ticket")

    def __init__(self, batch: Batch, ticket: Ticket) -> None:
        self._batch = batch
        self.ticket = ticket

    @property
    def batch(self) -> Batch:
        """The batch that carries this write (shared with the other writes in it)."""
        return self._batch

    def result(self, timeout: float | None = None) -> Ticket:
        """The ticket once RabbitMQ confirmed the write; raises its error otherwise."""
        self._batch.wait(timeout)
        return self.ticket

    def done(self) -> bool:
        return self._batch.done

    def exception(self, timeout: float | None = None) -> LiftlineError | None:
        try:
            self._batch.wait(timeout)
        except LiftlineError as exc:
            return exc
        return None
