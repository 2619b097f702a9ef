"""Pipelined publisher confirms on a BlockingConnection channel.

pika's BlockingChannel, once in confirm mode, waits for each confirm before the
next publish (one round trip per message). Here confirm mode is switched on on
the underlying channel with our own ack/nack callback, so a caller publishes a
whole list and then waits once for all of their confirms.

Success means every message of the wait was confirmed, so an ack that overtakes
an unanswered publish is never taken for success alone (RabbitMQ 3.10.8 confirms
publishes it did not store after one it lost at a leader change). With
``stall_s``, a wait in which a publish stays unanswered that long after a later
one was confirmed, or no confirm comes at all for that long, fails at once with
BrokerError, and the channel is not to be used again: callers publish again on a
fresh one (message ids keep a repeat harmless).
"""

from __future__ import annotations

import time
from typing import Any

import pika
import pika.exceptions
from pika.spec import Basic

from liftline.errors import BrokerError, PublishFailed, Timeout


def _nothing() -> None:
    return None


class ConfirmedChannel:
    """Publish many messages, then wait for every confirm; not thread-safe."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self.channel = connection.channel()
        self._pending: dict[int, str] = {}
        self._failed: dict[str, str] = {}
        self._returned: set[str] = set()
        self._next_tag = 1
        self._answered_at = 0.0  # the last confirm
        self._overtaken_at = 0.0  # the first confirm above a publish still unanswered
        self.broken = False
        selected: list[bool] = []
        self.channel.add_on_return_callback(self._on_return)
        self.channel._impl.confirm_delivery(  # see the module docstring
            ack_nack_callback=self._on_confirm, callback=lambda _frame: selected.append(True)
        )
        deadline = time.monotonic() + 10
        while not selected:
            if time.monotonic() > deadline:
                raise BrokerError("RabbitMQ did not enable publisher confirms")
            connection.process_data_events(time_limit=0.05)

    def _on_return(self, _ch: Any, method: Any, props: Any, _body: bytes) -> None:
        self._returned.add(props.message_id or "")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        now = time.monotonic()
        self._answered_at = now
        if not self._overtaken_at and self._pending and not method.multiple \
                and method.delivery_tag > next(iter(self._pending)):
            self._overtaken_at = now
        tags = [t for t in self._pending if t <= method.delivery_tag] if method.multiple \
            else [method.delivery_tag]
        for tag in tags:
            message_id = self._pending.pop(tag, None)
            if message_id is None:
                continue
            if isinstance(method, Basic.Nack):
                self._failed[message_id] = "nacked by RabbitMQ"
            elif message_id in self._returned:
                self._returned.discard(message_id)
                self._failed[message_id] = "unroutable (returned by RabbitMQ)"
        if not self._pending:
            # A confirm is not an event BlockingConnection waits for: without
            # this, process_data_events sleeps out its whole time limit.
            self.connection.add_callback_threadsafe(_nothing)

    def publish(self, exchange: str, routing_key: str, body: bytes,
                properties: pika.BasicProperties) -> None:
        """Queue one message (``properties.message_id`` must be set); it is sent by
        :meth:`wait`, which must follow."""
        # Registered before the publish: pika may read the confirm while it sends.
        self._pending[self._next_tag] = properties.message_id or ""
        self._next_tag += 1
        # On the underlying channel: BlockingChannel.basic_publish would flush the
        # socket after every message; wait() sends everything in one go instead.
        self.channel._impl.basic_publish(exchange, routing_key, body, properties=properties,
                                         mandatory=True)

    def wait(self, timeout_s: float = 30.0, stall_s: float | None = None) -> None:
        """Wait until every published message is confirmed; PublishFailed names failures.

        Raises BrokerError when the confirms stall (see the module docstring) and
        Timeout after ``timeout_s``; after either the channel is :attr:`broken`.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        self._answered_at, self._overtaken_at = started, 0.0
        try:
            while self._pending:
                now = time.monotonic()
                left = deadline - now
                if left <= 0:
                    self.broken = True
                    raise Timeout(f"{len(self._pending)} messages not confirmed in {timeout_s}s")
                if stall_s is not None and (
                        now - self._answered_at > stall_s
                        or (self._overtaken_at and now - self._overtaken_at > stall_s)):
                    self.broken = True
                    raise BrokerError(f"confirms stalled: {len(self._pending)} messages "
                                      f"unanswered for {stall_s}s; the channel is given up")
                self.connection.process_data_events(time_limit=min(left, 0.05))
        except pika.exceptions.AMQPError as exc:
            self.broken = True
            raise BrokerError(f"publishing failed: {exc!r}") from exc
        if self._failed:
            failed, self._failed = self._failed, {}
            self.broken = True
            raise PublishFailed("; ".join(f"{m}: {why}" for m, why in failed.items()))

    def publish_all(self, messages: list[tuple[str, str, bytes, pika.BasicProperties]],
                    timeout_s: float = 30.0, stall_s: float | None = None) -> None:
        for exchange, routing_key, body, props in messages:
            self.publish(exchange, routing_key, body, props)
        self.wait(timeout_s, stall_s)
