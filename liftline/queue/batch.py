"""Batch: writes of one partition that travel as one AMQP message under one confirm.

The publisher settles a batch once RabbitMQ confirmed, nacked or returned it;
the producers build them and hand them to the publisher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from liftline.errors import LiftlineError, Timeout

# Guards Batch._callbacks between a settling thread and one adding a callback.
_CALLBACKS_LOCK = threading.Lock()


class Batch:
    """Writes of one partition that travel as one AMQP message.

    Every write future of the batch waits on its one event: one confirm settles
    all of them.
    """

    __slots__ = ("partition", "first_seq", "producer_id", "writes", "size", "created", "sent_at",
                 "body", "message_id", "returned", "error", "done", "_event", "_callbacks")

    def __init__(self, partition: int, first_seq: int, producer_id: str = "") -> None:
        self.partition = partition
        self.first_seq = first_seq
        self.producer_id = producer_id
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

    def wait_done(self, timeout: float | None) -> bool:
        """Wait until the batch is settled, either way; False if ``timeout`` passed first."""
        return self._event.wait(timeout)

    def wait(self, timeout: float | None) -> None:
        # ``done`` (and ``error`` before it) is set a moment before the event: a caller
        # that saw done() must get the outcome, not a Timeout of a zero wait.
        if not self.done and not self._event.wait(timeout):
            raise Timeout(f"write not confirmed within {timeout}s (it may still be)")
        if self.error is not None:
            raise self.error
