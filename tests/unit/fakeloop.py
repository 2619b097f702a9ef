"""A LoopDriver for unit tests: a manual clock, and a scripted broker behind stub pika objects.

Also a :class:`Source` of batches to drive a ConfirmingPublisher without a Producer.

Nothing runs by itself. The test is the I/O loop: :meth:`FakeLoop.run_ready`
runs what was handed to the loop (``call_threadsafe``, and the stubs' own
completions), :meth:`FakeLoop.advance` moves the clock and fires the timers
that fall due, in order. The broker's side — opening or refusing a connection,
confirms, returns, a closed channel, a lost connection, resource alarms — is
played by calling the stubs' methods; each runs what it triggered before it
returns, so a test can assert right after it.

The stubs implement only what ConfirmingPublisher uses of pika's
SelectConnection and Channel, with pika's callback signatures and frames.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.frame import Method
from pika.spec import Basic, Confirm, Connection

from liftline import codec
from liftline.errors import LiftlineError
from liftline.producer import client as producer_client
from liftline.queue import batch as batch_module
from liftline.queue.batch import Batch
from liftline.queue.loops import Callback, LoopDriver

# More callbacks than this in one run_ready means the code under test spins.
_MAX_CALLBACKS_PER_TURN = 100_000


@dataclass(frozen=True)
class Published:
    """One basic_publish as the broker saw it."""

    connection: int  # StubConnection.number
    tag: int  # delivery tag on that connection's channel (confirm mode counts from 1)
    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    mandatory: bool

    @property
    def message_id(self) -> str:
        return str(self.properties.message_id)


class StubChannel:
    """A channel in confirm mode whose broker side the test plays."""

    def __init__(self, connection: StubConnection) -> None:
        self.connection = connection
        self._loop = connection.loop
        self.is_open = True
        self.confirming = False
        self.published: list[Published] = []
        self.confirmed: set[int] = set()  # tags acked or nacked, never answered twice
        self.returned: set[int] = set()
        # basic_publish raises this (once) instead of sending, as pika does on a dead socket;
        # the connection is lost right after.
        self.publish_error: Exception | None = None
        self._on_close: list[Callable[..., None]] = []
        self._on_return: list[Callable[..., None]] = []
        self._on_confirm: Callable[[Method], None] | None = None

    # -- what pika's Channel offers the publisher ---------------------------
    def add_on_close_callback(self, callback: Callable[..., None]) -> None:
        self._on_close.append(callback)

    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        self._on_return.append(callback)

    def confirm_delivery(self, ack_nack_callback: Callable[[Method], None],
                         callback: Callable[[Method], None] | None = None) -> None:
        self._on_confirm = ack_nack_callback
        self.confirming = True
        if callback is not None:
            self._loop.soon(lambda: callback(Method(1, Confirm.SelectOk())))

    def basic_publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: pika.BasicProperties | None = None,
                      mandatory: bool = False) -> None:
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")
        if self.publish_error is not None:
            # The socket is gone: pika reports the connection lost on its next turn.
            error, self.publish_error = self.publish_error, None
            self._loop.soon(lambda: self.connection.lose(error)
                            if self.connection.is_open else None)
            raise error
        record = Published(self.connection.number, len(self.published) + 1, exchange,
                           routing_key, bytes(body), properties or pika.BasicProperties(),
                           mandatory)
        self.published.append(record)
        self._loop.published.append(record)
        self._loop.events.append(("publish", self.connection.number, record.tag))

    def close(self) -> None:
        """The client closes the channel; its close callbacks run on the next turn
        (pika waits for CloseOk), and no confirm of it arrives any more."""
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("Channel is closed.")
        self._loop.events.append(("close_channel", self.connection.number,
                                  self.connection.channels.index(self) + 1))
        self.is_open = False
        reason = pika.exceptions.ChannelClosedByClient(200, "Normal shutdown")
        self._loop.soon(lambda: [cb(self, reason) for cb in list(self._on_close)])

    # -- the broker's side ----------------------------------------------------
    @property
    def unanswered(self) -> list[int]:
        """Tags published on this channel that got neither ack nor nack yet."""
        return [p.tag for p in self.published if p.tag not in self.confirmed]

    def ack(self, tag: int, multiple: bool = False) -> None:
        self._confirm(Basic.Ack(delivery_tag=tag, multiple=multiple), tag, multiple)

    def nack(self, tag: int, multiple: bool = False) -> None:
        self._confirm(Basic.Nack(delivery_tag=tag, multiple=multiple), tag, multiple)

    def ack_all(self) -> None:
        """One ``multiple`` ack for everything unanswered (nothing if there is none)."""
        if self.unanswered:
            self.ack(max(self.unanswered), multiple=True)

    def _confirm(self, method: Basic.Ack | Basic.Nack, tag: int, multiple: bool) -> None:
        assert self.is_open and self._on_confirm is not None, "no confirms on a closed channel"
        assert 1 <= tag <= len(self.published), f"tag {tag} was never published"
        covered = [t for t in self.unanswered if t <= tag] if multiple else [tag]
        assert tag not in self.confirmed, f"tag {tag} was already answered"
        self.confirmed.update(covered)
        kind = "ack" if isinstance(method, Basic.Ack) else "nack"
        self._loop.events.append((kind, self.connection.number, tag))
        self._on_confirm(Method(1, method))
        self._loop.run_ready()

    def return_unroutable(self, tag: int) -> None:
        """basic.return of the message with ``tag`` (it comes before the message's ack)."""
        assert tag not in self.confirmed, "RabbitMQ returns a message before confirming it"
        message = self.published[tag - 1]
        self.returned.add(tag)
        method = Basic.Return(reply_code=312, reply_text="NO_ROUTE",
                              exchange=message.exchange, routing_key=message.routing_key)
        for callback in list(self._on_return):
            callback(self, method, message.properties, message.body)
        self._loop.run_ready()

    def close_by_broker(self, code: int = 406, text: str = "PRECONDITION_FAILED") -> None:
        """The broker closes this channel (the connection stays up)."""
        self._closed(pika.exceptions.ChannelClosedByBroker(code, text))
        self._loop.run_ready()

    def _closed(self, reason: Exception) -> None:
        if not self.is_open:
            return
        self.is_open = False
        for callback in list(self._on_close):
            callback(self, reason)


class StubConnection:
    """A connection as pika's SelectConnection presents it, opened or lost by the test."""

    def __init__(self, loop: FakeLoop, number: int, *, on_open: Callable[..., None],
                 on_open_error: Callable[..., None], on_close: Callable[..., None]) -> None:
        self.loop = loop
        self.number = number
        self.state = "opening"
        self.opened_at = loop.now()
        self.channels: list[StubChannel] = []
        self._on_open = on_open
        self._on_open_error = on_open_error
        self._on_close = on_close
        self._on_blocked: list[Callable[..., None]] = []
        self._on_unblocked: list[Callable[..., None]] = []
        self.blocked = False

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def is_closing(self) -> bool:
        return self.state == "closing"

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"

    @property
    def channel_(self) -> StubChannel:
        """The last channel opened on this connection."""
        assert self.channels, f"connection {self.number} has no channel"
        return self.channels[-1]

    # -- what pika's connection offers the publisher ---------------------------
    def add_on_connection_blocked_callback(self, callback: Callable[..., None]) -> None:
        self._on_blocked.append(callback)

    def add_on_connection_unblocked_callback(self, callback: Callable[..., None]) -> None:
        self._on_unblocked.append(callback)

    def channel(self, on_open_callback: Callable[[StubChannel], None]) -> StubChannel:
        assert self.is_open, "pika opens channels only on an open connection"
        channel = StubChannel(self)
        self.channels.append(channel)
        self.loop.soon(lambda: on_open_callback(channel) if channel.is_open else None)
        return channel

    def close(self) -> None:
        if self.state in ("closing", "closed"):
            raise pika.exceptions.ConnectionWrongStateError(
                f"Illegal close in state {self.state}")
        was_opening = self.state == "opening"
        self.state = "closing"
        self.loop.events.append(("close", self.number, 0))

        def finish() -> None:
            self.state = "closed"
            if was_opening:
                self._on_open_error(self, pika.exceptions.ConnectionOpenAborted("closed"))
                return
            for channel in self.channels:
                channel._closed(pika.exceptions.ChannelClosedByClient(200, "Normal shutdown"))
            self._on_close(self, pika.exceptions.ConnectionClosedByClient(200, "Normal shutdown"))

        self.loop.soon(finish)

    # -- the broker's (or the network's) side -----------------------------------
    def open(self) -> None:
        """The handshake completes: on_open runs (and with it, channel and confirm mode)."""
        assert self.state == "opening", f"connection {self.number} is {self.state}"
        self.state = "open"
        self._on_open(self)
        self.loop.run_ready()

    def fail_open(self, error: Exception | None = None) -> None:
        assert self.state == "opening", f"connection {self.number} is {self.state}"
        self.state = "closed"
        self._on_open_error(self, error or pika.exceptions.AMQPConnectionError("refused"))
        self.loop.run_ready()

    def lose(self, reason: Exception | None = None) -> None:
        """The socket dies: channels and then the connection report closed."""
        assert self.state in ("open", "closing"), f"connection {self.number} is {self.state}"
        reason = reason or pika.exceptions.StreamLostError("Stream connection lost")
        self.state = "closed"
        self.loop.events.append(("lost", self.number, 0))
        for channel in self.channels:
            channel._closed(reason)
        self._on_close(self, reason)
        self.loop.run_ready()

    def block(self) -> None:
        """RabbitMQ blocks the connection (a memory or disk alarm)."""
        self.blocked = True
        for callback in list(self._on_blocked):
            callback(self, Method(0, Connection.Blocked(reason="low on memory")))
        self.loop.run_ready()

    def unblock(self) -> None:
        """The alarm clears: RabbitMQ unblocks the connection, if it had blocked it."""
        if not self.blocked:
            return
        self.blocked = False
        for callback in list(self._on_unblocked):
            callback(self, Method(0, Connection.Unblocked()))
        self.loop.run_ready()


class FakeLoop(LoopDriver):
    """A LoopDriver on a manual clock; the test runs the loop (see the module docstring).

    ``broker_up``: whether connections the publisher opens get through (on the
    next loop turn); ``refusals``: how many of the next ones fail even so. With
    ``auto_open=False`` they stay opening until the test calls ``open()`` or
    ``fail_open()`` on them.
    """

    def __init__(self, *, start: float = 1000.0, event_driven: bool = False,
                 auto_open: bool = True) -> None:
        self.event_driven = event_driven
        self.clock = start
        self.broker_up = True
        self.refusals = 0
        self.auto_open = auto_open
        self.connections: list[StubConnection] = []
        self.published: list[Published] = []
        # (what, connection number, tag): publish, ack, nack, close, lost, in order.
        self.events: list[tuple[str, int, int]] = []
        self.halted = threading.Event()
        self._lock = threading.Lock()
        self._ready: deque[Callback] = deque()
        self._timers: list[tuple[float, int, Callback]] = []
        self._order = itertools.count()

    # -- LoopDriver --------------------------------------------------------------
    def connect(self, params: pika.URLParameters, *, on_open: Callable[..., None],
                on_open_error: Callable[..., None],
                on_close: Callable[..., None]) -> StubConnection:
        conn = StubConnection(self, len(self.connections) + 1, on_open=on_open,
                              on_open_error=on_open_error, on_close=on_close)
        conn.node = f"{params.host}:{params.port}"
        self.connections.append(conn)
        if self.auto_open:
            def answer() -> None:
                if conn.state != "opening":
                    return
                if self.broker_up and self.refusals == 0:
                    conn.open()
                else:
                    self.refusals = max(0, self.refusals - 1)
                    conn.fail_open()
            self.soon(answer)
        return conn

    def call_later(self, delay_s: float, fn: Callback) -> Any:
        with self._lock:
            heapq.heappush(self._timers, (self.clock + delay_s, next(self._order), fn))
        return None

    def call_threadsafe(self, fn: Callback) -> None:
        self.soon(fn)

    def run(self, first: Callback) -> None:
        self.soon(first)

    def halt(self) -> None:
        self.halted.set()

    def join(self, timeout_s: float) -> None:
        # Called from a thread other than the test's, which runs the loop meanwhile.
        self.halted.wait(timeout_s)

    def now(self) -> float:
        return self.clock

    # -- the test runs the loop ---------------------------------------------------
    def soon(self, fn: Callback) -> None:
        with self._lock:
            self._ready.append(fn)

    def run_ready(self) -> None:
        """Run every callback handed to the loop, including those they hand on."""
        for _ in range(_MAX_CALLBACKS_PER_TURN):
            with self._lock:
                if not self._ready:
                    return
                fn = self._ready.popleft()
            fn()
        raise AssertionError("the loop never went idle")

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, firing every timer that falls due, in order."""
        target = self.clock + seconds
        self.run_ready()
        while True:
            with self._lock:
                if not self._timers or self._timers[0][0] > target:
                    break
                due, _, fn = heapq.heappop(self._timers)
            self.clock = max(self.clock, due)
            fn()
            self.run_ready()
        self.clock = target
        self.run_ready()

    # -- what the test looks at ------------------------------------------------------
    @property
    def connection(self) -> StubConnection:
        """The last connection the publisher opened."""
        assert self.connections, "the publisher opened no connection"
        return self.connections[-1]

    @property
    def channel(self) -> StubChannel:
        """The channel of the last connection."""
        return self.connection.channel_


def use_loop_clock(monkeypatch: pytest.MonkeyPatch, loop: FakeLoop) -> None:
    """Make Batch.created and the Producer's linger read ``loop``'s clock.

    Both read ``time.monotonic`` through their module's ``time``; only that name
    is replaced, in those two modules, for the test's duration (the wall clock,
    which the Producer's id renewal reads, stays the real one).
    """
    fake_time = SimpleNamespace(monotonic=loop.now, time=time.time)
    monkeypatch.setattr(batch_module, "time", fake_time)
    monkeypatch.setattr(producer_client, "time", fake_time)


# -- a source of batches for a ConfirmingPublisher -----------------------------------

class RecordedBatch(Batch):
    """A Batch that remembers every settle, so a second one cannot go unnoticed."""

    __slots__ = ("settles",)

    def __init__(self, partition: int, first_seq: int) -> None:
        super().__init__(partition, first_seq)
        self.settles: list[LiftlineError | None] = []

    def settle(self, error: LiftlineError | None = None) -> None:
        self.settles.append(error)
        super().settle(error)


class Source:
    """What the publisher pulls from: the batches a test adds, in order.

    Each batch carries ``writes`` real packed writes with consecutive seqs per
    partition, and the message id and body the Producer would give it.
    """

    def __init__(self, producer_id: str = "p") -> None:
        self.producer_id = producer_id
        self.batches: list[RecordedBatch] = []
        self.bodies: dict[str, bytes] = {}  # message id -> body (a batch drops it when settled)
        self.gave_up: list[LiftlineError] = []
        self._ready: list[Batch] = []
        self._next_seq: dict[int, int] = {}

    def add(self, partition: int = 0, writes: int = 1) -> RecordedBatch:
        first = self._next_seq.get(partition, 1)
        self._next_seq[partition] = first + writes
        batch = RecordedBatch(partition, first)
        batch.writes = [codec.pack_write("incr", f"k{partition}.{first + i}", 1)
                        for i in range(writes)]
        batch.message_id = f"{self.producer_id}:{partition}:{first}"
        batch.body = codec.pack_batch(self.producer_id, first, batch.writes)
        self.bodies[batch.message_id] = batch.body
        self.batches.append(batch)
        self._ready.append(batch)
        return batch

    def __call__(self, everything: bool) -> list[Batch]:
        out, self._ready = self._ready, []
        return out

    def give_up(self, error: LiftlineError) -> None:
        self.gave_up.append(error)


def outcome(batch: Batch) -> str:
    """``pending``, ``ok``, or the error as ``Type: message``."""
    if not batch.done:
        return "pending"
    if batch.error is None:
        return "ok"
    return f"{type(batch.error).__name__}: {batch.error}"
