"""Pipelined publisher confirms on a BlockingConnection channel.

pika's BlockingChannel, once in confirm mode, waits for each confirm before the
next publish (one round trip per message). Here confirm mode is switched on on
the underlying channel with our own ack/nack callback, so a caller publishes a
whole list and then waits once for all of their confirms.
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

    def wait(self, timeout_s: float = 30.0) -> None:
        """Wait until every published message is confirmed; PublishFailed names failures."""
        deadline = time.monotonic() + timeout_s
        try:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"{len(self._pending)} messages not confirmed in {timeout_s}s")
                self.connection.process_data_events(time_limit=min(left, 0.05))
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"publishing failed: {exc!r}") from exc
        if self._failed:
            failed, self._failed = self._failed, {}
            raise PublishFailed("; ".join(f"{m}: {why}" for m, why in failed.items()))

    def publish_all(self, messages: list[tuple[str, str, bytes, pika.BasicProperties]],
                    timeout_s: float = 30.0) -> None:
        for exchange, routing_key, body, props in messages:
            self.publish(exchange, routing_key, body, props)
        self.wait(timeout_s)
