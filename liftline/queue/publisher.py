"""A publisher with confirms on its own I/O thread (pika SelectConnection).

Batches are pulled from a source, published with ``mandatory`` and persistent
delivery, and settled only by the broker's answer: ack → success; return →
PublishFailed; a nack is retried on a fresh channel, PublishFailed after
``NACK_LIMIT`` nacks. When the connection drops, the unconfirmed batches are
published again, in order and unchanged, after a bounded reconnect to the next
RabbitMQ node of the list; the workers' watermarks make that repeat harmless.
When the reconnect budget is spent, every pending batch fails with
BrokerUnavailable: never a silent success.

A channel is never trusted again after a fault. An ack counts only once every
earlier publish of its channel is answered (see :mod:`liftline.queue.ledger`:
RabbitMQ 3.10.8 confirms, without storing them, publishes sent after one it
lost at a stream leader change). A publish left unanswered for
``confirm_stall_s``, or a nack, makes the publisher give the channel up: every
batch it holds, the acks that overtook the stuck publish included, goes out
again first on a fresh channel.

Where it runs is a :class:`~liftline.queue.loops.LoopDriver`: by default a
SelectConnection on a thread of its own; :class:`~liftline.queue.loops.AsyncioLoop`
runs the same logic on an asyncio loop (the HTTP ingest service).
"""

from __future__ import annotations

import contextlib
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
from liftline.queue.connection import Nodes, parameters, policy
from liftline.queue.ledger import Ledger
from liftline.queue.loops import LoopDriver, ThreadLoop
from liftline.queue.topology import Names
from liftline.settings import Settings, mask_url

log = logging.getLogger(__name__)

_NOT_STORED = "the broker was unreachable or blocked; the write was not stored"
_MAYBE_STORED = "the write may or may not have been stored"
_PROPS = dict(delivery_mode=2, content_type="application/x-msgpack", type="liftline.batch")
NACK_LIMIT = 3  # nacks of one batch (each on a fresh channel) before it fails


class ConfirmingPublisher:
    """Publishes batches from ``source`` until stopped, on its own thread or ``driver``.

    ``hold_while_blocked``: publish nothing while RabbitMQ blocks the connection
    (memory or disk alarm); batches wait, and expire as *not stored*, instead of
    piling up in a socket the broker no longer reads.

    ``stats`` counts what the broker did: channels given up after a stall or a
    nack, acks that came before an earlier publish was answered and were re-sent
    instead of believed (``untrusted_acks``), batches re-sent, reconnects.
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
        self._nodes = Nodes(settings)
        self._loop = driver or ThreadLoop(name)
        self._hold_while_blocked = hold_while_blocked
        # A polling loop seals lingering batches on its tick; an event-driven one
        # arms a timer per batch (batch_opened) and ticks only to expire.
        self._tick_s = 0.05 if self._loop.event_driven else \
            max(settings.linger_ms / 2000.0, 0.0005)
        self._stall_s = min(settings.confirm_stall_s, settings.confirm_timeout_s)
        # No batch awaiting a confirm on this channel was created before this.
        self._oldest_sent = float("inf")
        self._linger_armed = False
        self._halted = False
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._ready = False
        self._stopping = False
        self._closing = False
        self._attempt = 0
        self._ledger = Ledger()
        self._resend: deque[Batch] = deque()
        self._waiting: deque[Batch] = deque()
        self._by_message_id: dict[str, Batch] = {}
        self._nacks: dict[str, int] = {}
        self.stats = {"stalls": 0, "nacks": 0, "untrusted_acks": 0, "resent": 0,
                      "connections": 0}
        self.blocked = False
        self.connected = threading.Event()
        #: Messages (batches) handed to the broker so far, republished ones included.
        self.published = 0

    @property
    def event_driven(self) -> bool:
        """Whether it runs on an event-driven loop (asyncio): callers are on its thread."""
        return self._loop.event_driven

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
        """Batches published on the current channel and not settled yet."""
        return len(self._ledger)

    @property
    def halted(self) -> bool:
        """True once the publisher finished (after stop)."""
        return self._halted

    @property
    def node(self) -> str:
        """The URL of the RabbitMQ node it connects to now (or tried last)."""
        return self._nodes.current

    # -- I/O loop: connection and channel ------------------------------------
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
        self.stats["connections"] += 1
        self._connection = self._loop.connect(
            parameters(self._nodes.next(), name=self._name),
            on_open=self._on_open, on_open_error=self._on_open_error, on_close=self._on_closed,
        )

    def _on_open(self, connection: pika.SelectConnection) -> None:
        if self._stopping and not (self._resend or self._waiting):
            connection.close()
            return
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        self._open_channel(connection)

    def _open_channel(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:  # type: ignore[no-untyped-def]
        if self._connection is None or channel.connection is not self._connection \
                or self._channel is not None:
            return  # a connection or channel given up meanwhile
        self._channel = channel
        ledger = Ledger()
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(
            lambda ch, method, props, body: self._on_return(ch, method, props))
        # Bound to this channel's ledger: a confirm that reaches pika after the
        # channel was given up must not settle what its successor sent.
        channel.confirm_delivery(lambda frame: self._on_confirm(frame, ledger),
                                 callback=lambda _frame: self._on_confirm_mode(channel, ledger))

    def _on_confirm_mode(self, channel: Any, ledger: Ledger) -> None:
        if channel is not self._channel:
            return
        self._ledger = ledger
        self._ready = True
        self._attempt = 0
        self.connected.set()
        log.info("producer connected to %s", mask_url(self._nodes.current))
        self._pump()

    def _on_blocked(self, *_args) -> None:  # type: ignore[no-untyped-def]
        self.blocked = True
        log.warning("RabbitMQ blocked this connection (memory or disk alarm)")

    def _on_unblocked(self, *_args) -> None:  # type: ignore[no-untyped-def]
        self.blocked = False
        self._ledger.restart_clock(self._loop.now())
        log.info("RabbitMQ unblocked this connection")
        if self._hold_while_blocked:
            self._pump()

    def _on_channel_closed(self, channel, reason) -> None:  # type: ignore[no-untyped-def]
        if channel is not self._channel:
            return  # one given up on purpose
        if not self._stopping:
            log.warning("producer channel closed: %s", reason)
        self._ready = False
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_open_error(self, _conn, error) -> None:  # type: ignore[no-untyped-def]
        self._lost(error)

    def _on_closed(self, _conn, reason) -> None:  # type: ignore[no-untyped-def]
        self._lost(reason)

    def _take_back(self) -> None:
        """Everything the current channel holds goes out again first, in its order."""
        batches, acked = self._ledger.abandon()
        self._ledger = Ledger()
        self._oldest_sent = float("inf")
        again = [b for b in batches if not b.done]
        self.stats["untrusted_acks"] += acked
        self.stats["resent"] += len(again)
        self._resend = deque([*again, *self._resend])

    def _give_up_channel(self, why: str) -> None:
        """Never use this channel again: re-send what it holds on a fresh one."""
        held = len(self._ledger)
        channel, self._channel = self._channel, None
        self._ready = False
        self._take_back()
        log.warning("producer gives its channel up (%s): %d batches go out again on a "
                    "fresh channel", why, held)
        self._expire()
        if channel is not None:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                if channel.is_open:
                    channel.close()
        conn = self._connection
        if conn is not None and conn.is_open:
            self._open_channel(conn)

    def _lost(self, reason: object) -> None:
        self._ready = False
        self.connected.clear()
        self._channel = None
        # A new connection starts unblocked: RabbitMQ blocks it again if the alarm
        # holds, but never unblocks one it did not block.
        self.blocked = False
        # Unconfirmed batches (and acks not yet believed) go out again, first and in order.
        self._take_back()
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
        # The first retry goes at once to the next node of a list; a single node
        # (or a second failure) waits out the backoff first.
        delay = 0.0 if self._attempt == 0 and len(self._nodes) > 1 \
            else self._retry.delay(self._attempt)
        self._attempt += 1
        log.warning("producer lost RabbitMQ node %s (%s); reconnecting in %.2fs",
                    mask_url(self._nodes.current), reason, delay)
        self._loop.call_later(delay, self._connect)

    def _fail_everything(self, error: LiftlineError) -> None:
        batches, _ = self._ledger.abandon()
        for batch in [*self._resend, *self._waiting, *batches]:
            self._settle(batch, error)
        self._resend, self._waiting = deque(), deque()
        self._on_give_up(error)

    def _settle(self, batch: Batch, error: LiftlineError | None = None) -> None:
        self._by_message_id.pop(batch.message_id, None)
        self._nacks.pop(batch.message_id, None)
        batch.settle(error)

    # -- I/O loop: timers -----------------------------------------------------
    def _tick(self) -> None:
        if self._halted:
            return
        self._pump()
        # A blocked connection (a resource alarm) is not read by the broker: no stall.
        if self._ready and not self.blocked \
                and self._ledger.stalled_for(self._loop.now()) > self._stall_s:
            self.stats["stalls"] += 1
            self._give_up_channel(f"a publish waited {self._stall_s:.1f}s for its confirm")
        self._expire()
        self._loop.call_later(self._tick_s, self._tick)

    def _linger_over(self) -> None:
        self._linger_armed = False
        if not self._halted:
            self._pump(everything=True)

    def _expire(self) -> None:
        """Fail batches older than the confirm timeout (waiting, to resend, or sent)."""
        now = self._loop.now()
        limit = now - self._settings.confirm_timeout_s
        # Waiting batches are in creation order; resent ones are not (an old batch
        # given back by its channel may follow a younger one).
        while self._waiting and self._waiting[0].created < limit:
            self._expired(self._waiting.popleft(), _NOT_STORED)
        if any(b.created < limit for b in self._resend):
            kept: deque[Batch] = deque()
            for batch in self._resend:
                if batch.created >= limit:
                    kept.append(batch)
                else:  # sent before, it may be stored all the same
                    self._expired(batch, _MAYBE_STORED if batch.sent_at else _NOT_STORED)
            self._resend = kept
        if self._oldest_sent >= limit:
            return
        # Settled but kept in the ledger: an unanswered one still holds later acks back.
        oldest = float("inf")
        for entry in self._ledger:
            batch = entry.batch
            if batch.done:
                continue
            if batch.created < limit:
                self._expired(batch, _MAYBE_STORED)
            elif batch.created < oldest:
                oldest = batch.created
        self._oldest_sent = oldest

    def _expired(self, batch: Batch, why: str) -> None:
        self._settle(batch, PublishFailed(
            f"not confirmed within {self._settings.confirm_timeout_s}s; {why}"
        ))

    # -- I/O loop: publishing and confirms --------------------------------------
    def _pump(self, everything: bool = False) -> None:
        self._waiting.extend(self._source(self._stopping or everything))
        if self._hold_while_blocked and self.blocked and not self._stopping:
            return
        if not self._ready or self._channel is None:
            if self._stopping and not self._waiting and not self._resend:
                self._finish_stop()
            return
        channel = self._channel
        ledger = self._ledger
        exchange = self._names.exchange
        routing = Names.routing_key
        props_cls = pika.BasicProperties
        now = self._loop.now()
        while (self._resend or self._waiting) and len(ledger) < self._max_inflight:
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
            batch.sent_at = now
            batch.returned = False
            self.published += 1
            ledger.add(batch, now)
            if batch.created < self._oldest_sent:
                self._oldest_sent = batch.created
            self._by_message_id[batch.message_id] = batch
        if self._stopping and not (self._resend or self._waiting or ledger):
            self._finish_stop()

    def _on_return(self, channel: Any, method: Any, properties: Any) -> None:
        if channel is not self._channel:
            return
        batch = self._by_message_id.get(properties.message_id or "")
        if batch is not None:
            batch.returned = True
            log.error("batch %s returned: %s %s", batch.message_id,
                      method.reply_code, method.reply_text)

    def _on_confirm(self, frame: Any, ledger: Ledger) -> None:
        if ledger is not self._ledger:
            return  # a channel given up: what it says no longer counts
        method = frame.method
        nack = isinstance(method, Basic.Nack)
        ledger.answer(method.delivery_tag, method.multiple, nack)
        for batch in ledger.trusted():
            if batch.done:
                continue  # expired meanwhile
            if batch.returned:
                self._settle(batch, PublishFailed(
                    f"batch for partition {batch.partition} was unroutable"
                    " (is the cluster's topology declared?)"
                ))
            else:
                self._settle(batch)
        if nack:
            self._on_nacked(ledger.nacked)
        elif self._waiting or self._resend:
            self._pump()
        elif self._stopping and not ledger:
            self._finish_stop()

    def _on_nacked(self, nacked: list[Batch]) -> None:
        """A nack: the batch was not stored, and its channel is not to be trusted any
        more (RabbitMQ 3.10 nacks every later publish of a channel that published to
        a quorum queue whose leader died). Retried on a fresh channel, a few times."""
        self.stats["nacks"] += 1
        for batch in nacked:
            count = self._nacks.get(batch.message_id, 0) + 1
            self._nacks[batch.message_id] = count
            if count >= NACK_LIMIT and not batch.done:
                self._settle(batch, PublishFailed(
                    f"RabbitMQ nacked the batch {count} times; it was not stored"))
        self._give_up_channel("RabbitMQ nacked a publish")

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
