"""WriteFuture: the outcome of one write, settled with the batch that carries it."""

from __future__ import annotations

from liftline.errors import LiftlineError
from liftline.queue.batch import Batch
from liftline.tickets import Ticket


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
