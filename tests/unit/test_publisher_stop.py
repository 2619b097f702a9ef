"""ConfirmingPublisher's stop on a fake loop: what is pending goes out and is confirmed,
or fails, whatever the connection does meanwhile (helpers: test_publisher.py)."""

from __future__ import annotations

import pytest
from fakeloop import FakeLoop, Source, outcome, use_loop_clock
from test_publisher import TICK, send, start


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> FakeLoop:
    loop = FakeLoop()
    use_loop_clock(monkeypatch, loop)
    return loop


@pytest.fixture
def source() -> Source:
    return Source()


def test_stop_publishes_what_is_pending_waits_for_confirms_then_closes(loop, source):
    publisher = start(loop, source)
    early = source.add(0)
    send(loop, publisher)
    late = source.add(1)  # still in the source: stop pulls everything
    publisher.begin_stop()
    loop.run_ready()
    assert [p.message_id for p in loop.published] == [early.message_id, late.message_id]
    loop.advance(1.0)
    assert loop.connection.is_open and not publisher.halted  # waiting for the confirms
    loop.channel.ack(1)
    loop.advance(1.0)
    assert loop.connection.is_open
    loop.channel.ack(2)
    loop.advance(TICK)
    assert [outcome(b) for b in (early, late)] == ["ok", "ok"]
    assert loop.connection.is_closed and publisher.halted and loop.halted.is_set()
    assert loop.events[-3:] == [("ack", 1, 1), ("ack", 1, 2), ("close", 1, 0)]


def test_stop_with_nothing_pending_closes_at_once(loop, source):
    publisher = start(loop, source)
    publisher.begin_stop()
    loop.run_ready()
    assert loop.connection.is_closed and publisher.halted
    assert loop.events == [("close", 1, 0)]


def test_a_connection_lost_during_stop_fails_what_awaited_confirms(loop, source):
    publisher = start(loop, source)
    confirmed, unconfirmed = source.add(0), source.add(1)
    send(loop, publisher)
    loop.channel.ack(1)
    publisher.begin_stop()
    loop.run_ready()
    loop.connection.lose()
    assert outcome(confirmed) == "ok"
    assert outcome(unconfirmed) == "BrokerUnavailable: producer closed before confirms arrived"
    assert publisher.halted and len(loop.connections) == 1
    loop.advance(5.0)
    assert len(loop.connections) == 1  # no reconnect after the stop


def test_stop_during_a_reconnect_delivers_what_is_pending(loop, source):
    publisher = start(loop, source)
    batch = source.add(0)
    send(loop, publisher)
    loop.connection.lose()
    publisher.begin_stop()  # while the reconnect waits out its backoff
    loop.run_ready()
    loop.advance(0.2)
    assert len(loop.connections) == 2
    assert [p.message_id for p in loop.channel.published] == [batch.message_id]
    loop.channel.ack(1)
    loop.advance(TICK)
    assert outcome(batch) == "ok"
    assert loop.connection.is_closed and publisher.halted


def test_stop_during_a_reconnect_that_fails_fails_what_is_pending(loop, source):
    publisher = start(loop, source)
    batch = source.add(0)
    send(loop, publisher)
    loop.broker_up = False
    loop.connection.lose()
    publisher.begin_stop()
    loop.advance(0.2)
    assert outcome(batch) == "BrokerUnavailable: producer closed before confirms arrived"
    assert publisher.halted
