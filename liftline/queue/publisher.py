"""A publisher with confirms on its own I/O thread (pika SelectConnection).

Batches are pulled from a source, published with ``mandatory`` and persistent
delivery, and settled only by the broker's answer: ack → success; nack or
return → PublishFailed. When the connection drops, the unconfirmed batches are
published again, in order and unchanged, after a bounded reconnect; the
workers' watermarks make that repeat harmless. When the reconnect budget is
spent, every pending batch fails with BrokerUnavailable: never a silent success.

Where it runs is a :class:`~liftline.queue.loops.LoopDriver`: by default a
SelectConnection on a thread of its own; :class:`~liftline.queue.loops.AsyncioLoop`
runs the same logic on an asyncio loop (the HTTP ingest service).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
from pika.spec import Basic

from liftline.errors import BrokerUnavailable, LiftlineError, PublishFailed
from liftline.queue.batch import Batch
from liftline.queue.connection import parameters, policy
from liftline.queue.loops import LoopDriver, ThreadLoop
from liftline.queue.topology import Names
from liftline.settings import Settings, mask_url

log = logging.getLogger(__name__)

_NOT_STORED = "the broker was unreachable or blocked; the write was not stored"
_MAYBE_STORED = "the write may or may not have been stored"
_PROPS = dict(delivery_mode=2, content_type="application/x-msgpack", type="liftline.batch")


class ConfirmingPublisher:
    """Publishes batches from ``source`` until stopped, on its own thread or ``driver``.

    ``hold_while_blocked``: publish nothing while RabbitMQ blocks the connection
    (memory or disk alarm); batches wait, and expire as *not stored*, instead of
    piling up in a socket the broker no longer reads.
    """

    def __init__(
        self,
        settings: Settings,
        source: Callable[[bool], list[Batch]],
        on_give_up: Callable[[LiftlineError], None],
        *,
        name: str = "liftline-producer",
        max_inflight: int = 1024,
        driver: LoopDriver | None = None,
        hold_while_blocked: bool = False,
    ) -> None:
        self._settings = settings
        self._names = Names(settings.cluster)
        self._source = source
        self._on_give_up = on_give_up
        self._name = name
        self._max_inflight = max_inflight
        self._retry = policy(settings)
        self._loop = driver or ThreadLoop(name)
        self._hold_while_blocked = hold_while_blocked
        # A polling loop seals lingering batches on its tick; an event-driven one
        # arms a timer per batch (batch_opened) and ticks only to expire.
        self._tick_s = 0.05 if self._loop.event_driven else \
            max(settings.linger_ms / 2000.0, 0.0005)
        self._linger_armed = False
        self._halted = False
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._ready = False
        self._stopping = False
        self._closing = False
        self._attempt = 0
        self._next_tag = 1
        self._unconfirmed: dict[int, Batch] = {}
        self._resend: deque[Batch] = deque()
        self._waiting: deque[Batch] = deque()
        self._by_message_id: dict[str, Batch] = {}
        self.blocked = False
        self.connected = threading.Event()
        #: Messages (batches) handed to the broker so far, republished ones included.
        self.published = 0

    # -- thread-safe API ---------------------------------------------------
    def start(self) -> None:
        self._loop.run(self._begin)

    def wake(self) -> None:
        """Ask the I/O loop to pull from the source now (from any thread)."""
        try:
            self._loop.call_threadsafe(self._pump)
        except Exception:  # the loop is closed: nothing left to wake
            pass

    def batch_opened(self) -> None:
        """A new batch started lingering (event-driven drivers only; call on the loop).

        Arms one timer that seals every open batch ``linger_ms`` later, so no
        write waits longer than that and an idle publisher costs nothing.
        """
        if not self._loop.event_driven or self._linger_armed:
            return
        self._linger_armed = True
        self._loop.call_later(self._settings.linger_ms / 1000.0, self._linger_over)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection and end the loop; pending batches are failed."""
        self.begin_stop()
        self._loop.join(timeout)

    def begin_stop(self) -> None:
        """Start closing (from any thread) without waiting for the end."""
        try:
            self._loop.call_threadsafe(self._begin_stop)
        except Exception:
            return

    @property
    def inflight(self) -> int:
        return len(self._unconfirmed)

    @property
    def halted(self) -> bool:
        """True once the publisher finished (after stop)."""
        return self._halted

    # -- I/O loop ----------------------------------------------------------
    def _begin(self) -> None:
        self._connect()
        self._loop.call_later(self._tick_s, self._tick)

    def _halt(self) -> None:
        self._halted = True
        self._loop.halt()

    def _connect(self) -> None:
        # A stop during a reconnect's backoff still delivers what is pending (one
        # more try: if it fails, _lost fails it all) instead of letting it expire.
        if self._stopping and not (self._resend or self._waiting):
            return
        self._connection = self._loop.connect(
            parameters(self._settings.amqp_url, name=self._name),
            on_open=self._on_open, on_open_error=self._on_open_error, on_close=self._on_closed,
        )

    def _on_open(self, connection: pika.SelectConnection) -> None:
        if self._stopping and not (self._resend or self._waiting):
            connection.close()
            return
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:  # type: ignore[no-untyped-def]
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame) -> None:  # type: ignore[no-untyped-def]
        self._next_tag = 1
        self._ready = True
        self._attempt = 0
        self.connected.set()
        log.info("producer connected to %s", mask_url(self._settings.amqp_url))
        self._pump()

    def _on_blocked(self, *_args) -> None:  # type: ignore[no-untyped-def]
        self.blocked = True
        log.warning("RabbitMQ blocked this connection (memory or disk alarm)")

    def _on_unblocked(self, *_args) -> None:  # type: ignore[no-untyped-def]
        self.blocked = False
        log.info("RabbitMQ unblocked this connection")
        if self._hold_while_blocked:
            self._pump()

    def _on_channel_closed(self, channel, reason) -> None:  # type: ignore[no-untyped-def]
        if not self._stopping:
            log.warning("producer channel closed: %s", reason)
        self._ready = False
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_open_error(self, _conn, error) -> None:  # type: ignore[no-untyped-def]
        self._lost(error)

    def _on_closed(self, _conn, reason) -> None:  # type: ignore[no-untyped-def]
        self._lost(reason)

    def _lost(self, reason: object) -> None:
        self._ready = False
        self.connected.clear()
        self._channel = None
        # A new connection starts unblocked: RabbitMQ blocks it again if the alarm
        # holds, but never unblocks one it did not block.
        self.blocked = False
        # Unconfirmed batches go out again, first and in their order.
        self._resend = deque([*self._unconfirmed.values(), *self._resend])
        self._unconfirmed.clear()
        if self._stopping:
            self._fail_everything(BrokerUnavailable("producer closed before confirms arrived"))
            self._halt()
            return
        if self._attempt + 1 >= self._retry.attempts:
            self._fail_everything(BrokerUnavailable(
                f"RabbitMQ at {mask_url(self._settings.amqp_url)} unreachable after "
                f"{self._attempt + 1} attempts: {reason}"
            ))
            self._attempt = 0
            # Keep trying in the background at the slowest pace: new writes may succeed.
            self._loop.call_later(self._retry.cap_s, self._connect)
            return
        delay = self._retry.delay(self._attempt)
        self._attempt += 1
        log.warning("producer lost RabbitMQ (%s); reconnecting in %.2fs", reason, delay)
        self._loop.call_later(delay, self._connect)

    def _fail_everything(self, error: LiftlineError) -> None:
        for batch in [*self._resend, *self._waiting, *self._unconfirmed.values()]:
            batch.settle(error)
            self._by_message_id.pop(batch.message_id, None)
        self._resend, self._waiting = deque(), deque()
        self._unconfirmed.clear()
        self._on_give_up(error)

    def _tick(self) -> None:
        if self._halted:
            return
        self._pump()
        self._expire()
        self._loop.call_later(self._tick_s, self._tick)

    def _linger_over(self) -> None:
        self._linger_armed = False
        if not self._halted:
            self._pump(everything=True)

    def _expire(self) -> None:
        """Fail batches that waited longer than the confirm timeout (oldest first)."""
        limit = self._loop.now() - self._settings.confirm_timeout_s
        for queue in (self._resend, self._waiting):
            while queue and queue[0].created < limit:
                batch = queue.popleft()
                # One sent before its connection dropped may be stored all the same.
                self._expired(batch, _MAYBE_STORED if batch.sent_at else _NOT_STORED)
        while self._unconfirmed:
            tag, batch = next(iter(self._unconfirmed.items()))
            if batch.sent_at >= limit:
                break
            del self._unconfirmed[tag]
            self._expired(batch, _MAYBE_STORED)

    def _expired(self, batch: Batch, why: str) -> None:
        self._by_message_id.pop(batch.message_id, None)
        batch.settle(PublishFailed(
            f"not confirmed within {self._settings.confirm_timeout_s}s; {why}"
        ))

    def _pump(self, everything: bool = False) -> None:
        self._waiting.extend(self._source(self._stopping or everything))
        if self._hold_while_blocked and self.blocked and not self._stopping:
            return
        if not self._ready or self._channel is None:
            if self._stopping and not self._waiting and not self._resend:
                self._finish_stop()
            return
        channel = self._channel
        exchange = self._names.exchange
        routing = Names.routing_key
        props_cls = pika.BasicProperties
        while (self._resend or self._waiting) and len(self._unconfirmed) < self._max_inflight:
            batch = self._resend.popleft() if self._resend else self._waiting.popleft()
            if batch.done:
                continue
            try:
                channel.basic_publish(
                    exchange, routing(batch.partition), batch.body,
                    properties=props_cls(message_id=batch.message_id, **_PROPS),
                    mandatory=True,
                )
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("publish failed (%r); will retry after reconnect", exc)
                self._resend.appendleft(batch)
                return
            batch.sent_at = self._loop.now()
            batch.returned = False
            self.published += 1
            self._unconfirmed[self._next_tag] = batch
            self._by_message_id[batch.message_id] = batch
            self._next_tag += 1
        if self._stopping and not (self._resend or self._waiting or self._unconfirmed):
            self._finish_stop()

    def _on_return(self, _channel, method, properties, _body) -> None:  # type: ignore[no-untyped-def]
        batch = self._by_message_id.get(properties.message_id or "")
        if batch is not None:
            batch.returned = True
            log.error("batch %s returned: %s %s", batch.message_id,
                      method.reply_code, method.reply_text)

    def _on_confirm(self, frame) -> None:  # type: ignore[no-untyped-def]
        method = frame.method
        tag = method.delivery_tag
        nack = isinstance(method, Basic.Nack)
        tags = [t for t in self._unconfirmed if t <= tag] if method.multiple else [tag]
        for t in tags:
            batch = self._unconfirmed.pop(t, None)
            if batch is None:
                continue
            self._by_message_id.pop(batch.message_id, None)
            if nack:
                batch.settle(PublishFailed("RabbitMQ nacked the batch; it was not stored"))
            elif batch.returned:
                batch.settle(PublishFailed(
                    f"batch for partition {batch.partition} was unroutable"
                    " (is the cluster's topology declared?)"
                ))
            else:
                batch.settle()
        if self._waiting or self._resend:
            self._pump()

    def _begin_stop(self) -> None:
        self._stopping = True
        self._pump()

    def _finish_stop(self) -> None:
        if self._closing:
            return
        self._closing = True
        conn = self._connection
        if conn is not None and conn.is_open:
            conn.close()  # _on_closed stops the loop
        elif conn is None or conn.is_closed:
            self._fail_everything(BrokerUnavailable("producer closed"))
            self._halt()
        # else the connection is opening or closing: its callbacks end the loop
