"""Which confirms may be believed: the publisher's Ledger, and ConfirmedChannel's stall.

RabbitMQ 3.10.8 at a stream leader change drops a channel's in-flight publishes
without answering them and confirms later ones without storing them. An ack counts
only once every earlier publish of its channel is answered; a channel whose oldest
publish waits too long is given up with everything it holds.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from pika.frame import Method
from pika.spec import Basic

from liftline.errors import BrokerError, Timeout
from liftline.queue.batch import Batch
from liftline.queue.confirms import ConfirmedChannel
from liftline.queue.ledger import Ledger


def batches(n: int) -> list[Batch]:
    return [Batch(0, i + 1) for i in range(n)]


def test_acks_in_order_are_believed_at_once() -> None:
    ledger, bs = Ledger(), batches(3)
    tags = [ledger.add(b, 1.0) for b in bs]
    assert tags == [1, 2, 3]
    ledger.answer(2, multiple=True, nack=False)
    assert ledger.trusted() == bs[:2]
    ledger.answer(3, multiple=False, nack=False)
    assert ledger.trusted() == bs[2:] and len(ledger) == 0


def test_an_ack_that_overtakes_an_unanswered_publish_waits_for_it() -> None:
    ledger, bs = Ledger(), batches(4)
    for b in bs:
        ledger.add(b, 1.0)
    ledger.answer(3, multiple=False, nack=False)
    ledger.answer(4, multiple=False, nack=False)
    assert ledger.trusted() == []
    assert ledger.stalled_for(3.5) == 2.5  # tag 1 has waited since 1.0
    ledger.answer(1, multiple=False, nack=False)
    assert ledger.trusted() == bs[:1]
    ledger.answer(2, multiple=False, nack=False)
    assert ledger.trusted() == bs[1:]
    assert ledger.stalled_for(9.0) == 0.0


def test_giving_a_channel_up_returns_everything_held_in_order_with_its_acks_counted() -> None:
    ledger, bs = Ledger(), batches(5)
    for b in bs:
        ledger.add(b, 1.0)
    ledger.answer(1, multiple=False, nack=False)
    ledger.answer(4, multiple=False, nack=False)
    ledger.answer(5, multiple=False, nack=False)
    assert ledger.trusted() == bs[:1]
    given_back, acked = ledger.abandon()
    assert given_back == bs[1:] and acked == 2
    assert len(ledger) == 0 and ledger.trusted() == []


def test_a_nack_stops_the_trusted_prefix_and_is_reported() -> None:
    ledger, bs = Ledger(), batches(3)
    for b in bs:
        ledger.add(b, 1.0)
    ledger.answer(1, multiple=False, nack=False)
    ledger.answer(2, multiple=False, nack=True)
    ledger.answer(3, multiple=False, nack=False)
    assert ledger.trusted() == bs[:1]
    assert ledger.nacked == bs[1:2]
    assert ledger.stalled_for(10.0) == 0.0  # a nack is not a stall: the publisher acts on it


class FakeImpl:
    """The channel under pika's BlockingChannel, as ConfirmedChannel uses it."""

    def __init__(self) -> None:
        self.on_confirm: Any = None
        self.published = 0

    def confirm_delivery(self, ack_nack_callback: Any, callback: Any) -> None:
        self.on_confirm = ack_nack_callback
        callback(None)

    def basic_publish(self, *args: Any, **kwargs: Any) -> None:
        self.published += 1


class FakeBlocking:
    def __init__(self, impl: FakeImpl) -> None:
        self._impl = impl

    def add_on_return_callback(self, _cb: Any) -> None:
        pass


class FakeConnection:
    """process_data_events plays the broker: it acks the tags in ``acks``, once each."""

    def __init__(self) -> None:
        self.impl = FakeImpl()
        self.acks: list[int] = []

    def channel(self) -> FakeBlocking:
        return FakeBlocking(self.impl)

    def process_data_events(self, time_limit: float) -> None:
        while self.acks:
            self.impl.on_confirm(Method(1, Basic.Ack(delivery_tag=self.acks.pop(0))))
        time.sleep(min(time_limit, 0.01))

    def add_callback_threadsafe(self, _cb: Any) -> None:
        pass


def publish(channel: ConfirmedChannel, n: int) -> None:
    import pika

    for i in range(n):
        channel.publish("x", "k", b"", pika.BasicProperties(message_id=f"m{i}"))


def test_confirmed_channel_gives_up_when_later_acks_overtake_a_stuck_publish() -> None:
    conn = FakeConnection()
    channel = ConfirmedChannel(conn)  # type: ignore[arg-type]
    publish(channel, 3)
    conn.acks = [2, 3]  # tag 1 never answered
    started = time.monotonic()
    with pytest.raises(BrokerError, match="confirms stalled"):
        channel.wait(timeout_s=5, stall_s=0.2)
    assert 0.2 <= time.monotonic() - started < 2 and channel.broken


def test_confirmed_channel_without_a_stall_bound_waits_out_its_timeout() -> None:
    conn = FakeConnection()
    channel = ConfirmedChannel(conn)  # type: ignore[arg-type]
    publish(channel, 2)
    conn.acks = [2]
    with pytest.raises(Timeout):
        channel.wait(timeout_s=0.3)
    assert channel.broken


def test_confirmed_channel_returns_once_everything_is_confirmed() -> None:
    conn = FakeConnection()
    channel = ConfirmedChannel(conn)  # type: ignore[arg-type]
    publish(channel, 3)
    conn.acks = [3, 1, 2]
    channel.wait(timeout_s=5, stall_s=0.5)
    assert not channel.broken
