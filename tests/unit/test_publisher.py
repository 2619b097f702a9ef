"""ConfirmingPublisher's state machine on a fake loop: confirms, returns, loss, expiry, stop.

No server: tests/unit/fakeloop.py plays the broker and the clock. Every test
looks at outcomes — what each batch was settled with, what reached the broker
and how often — never at which methods were called.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pika.exceptions
import pytest
from fakeloop import FakeLoop, Source, outcome, use_loop_clock

from liftline import codec
from liftline.queue.publisher import NACK_LIMIT, ConfirmingPublisher
from liftline.settings import Settings

# linger 100 ms: a polling loop ticks every 50 ms.
BASE: dict[str, Any] = dict(linger_ms=100, confirm_timeout_s=5.0, reconnect_attempts=4,
                            reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.4)
TICK = 0.05
MAYBE_STORED = "PublishFailed: not confirmed within 5.0s; the write may or may not have been stored"
NOT_STORED = ("PublishFailed: not confirmed within 5.0s; the broker was unreachable or blocked;"
              " the write was not stored")


def unroutable(partition: int) -> str:
    return (f"PublishFailed: batch for partition {partition} was unroutable"
            " (is the cluster's topology declared?)")


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> FakeLoop:
    loop = FakeLoop()
    use_loop_clock(monkeypatch, loop)
    return loop


@pytest.fixture
def source() -> Source:
    return Source()


def start(loop: FakeLoop, source: Source, *, max_inflight: int = 1024,
          hold_while_blocked: bool = False, **settings: Any) -> ConfirmingPublisher:
    """A publisher on ``loop``, connected and in confirm mode (if the broker is up)."""
    publisher = ConfirmingPublisher(Settings(**{**BASE, **settings}), source, source.give_up,
                                    driver=loop, max_inflight=max_inflight,
                                    hold_while_blocked=hold_while_blocked)
    publisher.start()
    loop.run_ready()
    return publisher


def send(loop: FakeLoop, publisher: ConfirmingPublisher) -> None:
    publisher.wake()
    loop.run_ready()


def sent(channel_or_loop: Any) -> list[tuple[str, bytes]]:
    return [(p.message_id, p.body) for p in channel_or_loop.published]


def times_published(loop: FakeLoop) -> Counter[str]:
    return Counter(p.message_id for p in loop.published)


def test_batches_go_out_persistent_mandatory_to_their_partition(loop, source):
    publisher = start(loop, source, cluster="c1")
    batches = [source.add(3, writes=2), source.add(0)]
    send(loop, publisher)
    published = loop.channel.published
    assert [(p.exchange, p.routing_key, p.mandatory) for p in published] == [
        ("liftline.c1.writes", "p3", True), ("liftline.c1.writes", "p0", True)]
    assert [(p.properties.message_id, p.properties.delivery_mode) for p in published] == [
        ("p:3:1", 2), ("p:0:1", 2)]
    assert codec.unpack_batch(published[0].body)[:2] == ("p", 1)
    assert [outcome(b) for b in batches] == ["pending", "pending"]
    assert publisher.inflight == 2 and publisher.connected.is_set()


def test_a_multiple_ack_settles_every_tag_up_to_and_including_its_own(loop, source):
    publisher = start(loop, source)
    batches = [source.add(i % 2) for i in range(5)]
    send(loop, publisher)
    loop.channel.ack(2)
    loop.channel.ack(4, multiple=True)
    assert [outcome(b) for b in batches] == ["ok"] * 4 + ["pending"]
    loop.channel.ack(5)
    assert [outcome(b) for b in batches] == ["ok"] * 5
    assert all(len(b.settles) == 1 for b in batches)
    assert publisher.inflight == 0


def test_a_nack_gives_the_channel_up_and_the_batch_goes_out_again_on_a_fresh_one(
        loop, source):
    publisher = start(loop, source)
    batches = [source.add(i % 3) for i in range(4)]
    send(loop, publisher)
    first = loop.channel
    first.ack(1)
    first.nack(2)
    # What the prefix before the nack confirmed stands; the rest is sent again, in order,
    # on a fresh channel of the same connection (the nacking one is closed).
    assert [outcome(b) for b in batches] == ["ok", "pending", "pending", "pending"]
    assert not first.is_open and len(loop.connections) == 1
    second = loop.channel
    assert second is not first
    assert sent(second) == sent(first)[1:]
    second.ack_all()
    assert [outcome(b) for b in batches] == ["ok"] * 4
    assert all(len(b.settles) == 1 for b in batches)
    assert publisher.stats["nacks"] == 1


def test_a_batch_nacked_on_every_fresh_channel_fails_after_the_nack_limit(loop, source):
    publisher = start(loop, source)
    batch, other = source.add(0), source.add(1)
    send(loop, publisher)
    for attempt in range(1, NACK_LIMIT + 1):
        assert outcome(batch) == "pending"
        loop.channel.nack(1)  # the batch is always the first publish of a fresh channel
        if attempt < NACK_LIMIT:
            assert sent(loop.channel) == [(batch.message_id, source.bodies[batch.message_id]),
                                          (other.message_id, source.bodies[other.message_id])]
    assert outcome(batch) == f"PublishFailed: RabbitMQ nacked the batch {NACK_LIMIT} times; " \
                             "it was not stored"
    assert sent(loop.channel) == [(other.message_id, source.bodies[other.message_id])]
    loop.channel.ack(1)
    assert outcome(other) == "ok"
    assert times_published(loop) == {batch.message_id: NACK_LIMIT, other.message_id: NACK_LIMIT + 1}


def test_an_ack_that_overtakes_an_unanswered_publish_is_believed_only_after_it(loop, source):
    publisher = start(loop, source)
    batches = [source.add(p) for p in (0, 1, 0, 2)]
    send(loop, publisher)
    loop.channel.ack(3)
    loop.channel.ack(4)
    assert [outcome(b) for b in batches] == ["pending"] * 4
    loop.channel.ack(1)
    assert [outcome(b) for b in batches] == ["ok", "pending", "pending", "pending"]
    loop.channel.ack(2)
    assert [outcome(b) for b in batches] == ["ok"] * 4
    assert publisher.inflight == 0 and publisher.stats["stalls"] == 0


def test_a_stalled_publish_gives_the_channel_up_and_the_acks_after_it_count_for_nothing(
        loop, source):
    # RabbitMQ 3.10.8 at a stream leader change: the in-flight publish is never
    # confirmed, later ones are confirmed without being stored.
    publisher = start(loop, source)
    batches = [source.add(p) for p in (0, 1, 0, 2)]
    send(loop, publisher)
    first = loop.channel
    first.ack(1)
    first.ack(4, multiple=False)
    first.ack(3)
    loop.advance(1.9)
    assert [outcome(b) for b in batches] == ["ok", "pending", "pending", "pending"]
    loop.advance(0.2)  # tag 2 has waited past confirm_stall_s (2 s)
    assert not first.is_open and len(loop.connections) == 1
    second = loop.channel
    assert sent(second) == sent(first)[1:]  # the acked 3 and 4 go out again too, in order
    assert [outcome(b) for b in batches] == ["ok", "pending", "pending", "pending"]
    assert publisher.stats == {**publisher.stats, "stalls": 1, "untrusted_acks": 2,
                               "resent": 3}
    second.ack_all()
    assert [outcome(b) for b in batches] == ["ok"] * 4
    assert all(len(b.settles) == 1 for b in batches)


def test_a_blocked_connection_does_not_count_as_a_stall(loop, source):
    # An alarm: RabbitMQ stops reading the connection. Giving the channel up would only
    # write the same batches again into a socket nobody reads.
    publisher = start(loop, source)
    batch = source.add(0)
    send(loop, publisher)
    loop.connection.block()
    loop.advance(3.0)
    assert publisher.stats["stalls"] == 0 and len(loop.connection.channels) == 1
    loop.connection.unblock()
    loop.advance(1.9)  # the wait for its confirm starts over at the unblock
    assert publisher.stats["stalls"] == 0
    loop.channel.ack(1)
    assert outcome(batch) == "ok"


def test_a_lost_node_is_left_for_the_next_one_of_the_list_at_once(loop, source):
    nodes = ",".join(f"amqp://guest:guest@127.0.0.1:{port}/%2F" for port in (5601, 5602, 5603))
    publisher = start(loop, source, amqp_url=nodes)
    batch = source.add(0)
    send(loop, publisher)
    first = loop.connection
    first.lose()
    loop.advance(0.0)  # no backoff before the first retry: another node may be fine
    second = loop.connection
    assert second.number == 2 and second.is_open
    ports = [int(node.split(":")[1]) for node in (first.node, second.node)]
    assert ports[1] == 5601 + (ports[0] - 5601 + 1) % 3
    assert sent(second.channel_) == sent(first.channel_)
    second.channel_.ack(1)
    assert outcome(batch) == "ok"
    # Refused by the next node too: the one after it, after the backoff.
    second.lose()
    loop.refusals = 1
    loop.advance(0.5)
    assert [c.node for c in loop.connections[2:4]] == [
        f"127.0.0.1:{5601 + (ports[1] - 5601 + k) % 3}" for k in (1, 2)]


def test_a_returned_batch_fails_although_its_ack_follows(loop, source):
    publisher = start(loop, source)
    routed, unroutable_batch, other = source.add(0), source.add(5), source.add(1)
    send(loop, publisher)
    loop.channel.return_unroutable(2)
    assert outcome(unroutable_batch) == "pending"  # a return is final only with its ack
    loop.channel.ack(3, multiple=True)
    assert [outcome(b) for b in (routed, unroutable_batch, other)] == [
        "ok", unroutable(5), "ok"]


def test_a_lost_connection_is_reopened_and_unconfirmed_batches_resent_in_order(loop, source):
    publisher = start(loop, source)
    batches = [source.add(0, writes=3), source.add(1), source.add(0, writes=2)]
    send(loop, publisher)
    first = loop.connection
    first.channel_.ack(1)
    first.lose()
    assert not publisher.connected.is_set()
    late = source.add(1)  # written during the outage
    loop.advance(TICK)
    loop.advance(0.2)  # past the first backoff (at most reconnect_backoff_s)
    second = loop.connection
    assert second.number == 2 and second.is_open and publisher.connected.is_set()
    # The same messages, byte for byte (same producer, seqs and ids), first and in order.
    assert sent(second.channel_) == sent(first.channel_)[1:] + [
        (late.message_id, source.bodies[late.message_id])]
    assert [outcome(b) for b in batches] == ["ok", "pending", "pending"]
    second.channel_.ack(3, multiple=True)
    assert [outcome(b) for b in [*batches, late]] == ["ok"] * 4
    assert times_published(loop) == {"p:0:1": 1, "p:1:1": 2, "p:0:4": 2, "p:1:2": 1}
    assert source.gave_up == []


@pytest.mark.parametrize("refusals", [0, 1, 2])
def test_reconnects_within_the_budget_with_bounded_backoff(loop, source, refusals):
    publisher = start(loop, source)  # 4 attempts: the lost connection and 3 more
    batches = [source.add(0), source.add(1)]
    send(loop, publisher)
    loop.refusals = refusals
    lost_at = loop.clock
    loop.connection.lose()
    loop.advance(5.0)
    assert len(loop.connections) == 2 + refusals and loop.connection.is_open
    opened = [lost_at] + [c.opened_at for c in loop.connections[1:]]
    for n, (before, after) in enumerate(zip(opened, opened[1:], strict=False)):
        ceiling = min(0.4, 0.1 * 2**n)
        assert ceiling / 2 <= after - before <= ceiling + TICK
    assert sent(loop.channel) == sent(loop.connections[0].channel_)
    loop.channel.ack_all()
    assert [outcome(b) for b in batches] == ["ok", "ok"]
    assert source.gave_up == []


def test_past_the_reconnect_budget_every_pending_batch_fails_and_later_writes_work(loop, source):
    publisher = start(loop, source, max_inflight=2)
    batches = [source.add(0), source.add(1), source.add(2)]  # two in flight, one waiting
    send(loop, publisher)
    assert len(loop.channel.published) == 2
    loop.broker_up = False
    loop.connection.lose()
    loop.advance(0.7)  # three refused reconnects, 0.1 + 0.2 + 0.4 apart at most
    assert len(loop.connections) == 4
    for batch in batches:
        assert outcome(batch).startswith("BrokerUnavailable: RabbitMQ at amqp://")
        assert "unreachable after 4 attempts" in outcome(batch)
    assert len(source.gave_up) == 1
    # It keeps trying at the slowest pace; a write made once RabbitMQ is back gets through.
    loop.broker_up = True
    loop.advance(0.4)
    assert loop.connection.is_open and publisher.connected.is_set()
    fresh = source.add(0)
    send(loop, publisher)
    assert [p.message_id for p in loop.channel.published] == [fresh.message_id]
    loop.channel.ack(1)
    assert outcome(fresh) == "ok"
    assert [outcome(b).split(":")[0] for b in batches] == ["BrokerUnavailable"] * 3
    assert all(len(b.settles) == 1 for b in [*batches, fresh])


def test_an_unconfirmed_batch_expires_and_never_succeeds_later(loop, source):
    # With the stall allowance at the timeout, the channel is given up when the batch
    # expires: it is not sent again, and nothing on that channel can confirm it later.
    publisher = start(loop, source, confirm_stall_s=5.0)
    batch = source.add(0)
    send(loop, publisher)
    first = loop.channel
    loop.advance(4.9)
    assert outcome(batch) == "pending"
    loop.advance(0.2)
    assert outcome(batch) == MAYBE_STORED
    assert publisher.inflight == 0 and not first.is_open
    loop.connection.lose()
    loop.advance(1.0)
    assert outcome(batch) == MAYBE_STORED and len(batch.settles) == 1
    assert times_published(loop) == {batch.message_id: 1}


def test_a_batch_given_back_by_stalled_channels_still_expires_on_time(loop, source):
    publisher = start(loop, source)  # stalls after 2 s, times out after 5 s
    batch = source.add(0)
    send(loop, publisher)
    loop.advance(4.9)
    assert outcome(batch) == "pending" and times_published(loop)[batch.message_id] == 3
    loop.advance(0.2)
    assert outcome(batch) == MAYBE_STORED and publisher.stats["stalls"] == 2


def test_a_batch_held_while_blocked_expires_unsent(loop, source):
    publisher = start(loop, source, hold_while_blocked=True)
    loop.connection.block()
    assert publisher.blocked
    batch = source.add(0)
    send(loop, publisher)
    loop.advance(4.9)
    assert loop.published == [] and outcome(batch) == "pending"
    loop.advance(0.2)
    assert outcome(batch) == NOT_STORED
    loop.connection.unblock()
    loop.advance(1.0)
    assert loop.published == [] and len(batch.settles) == 1


def test_a_blocked_connection_without_hold_still_publishes(loop, source):
    publisher = start(loop, source)
    loop.connection.block()
    batch = source.add(0)
    send(loop, publisher)
    assert publisher.blocked and [p.message_id for p in loop.published] == [batch.message_id]
    loop.connection.unblock()
    loop.channel.ack(1)
    assert not publisher.blocked and outcome(batch) == "ok"


def test_held_batches_go_out_when_the_connection_is_unblocked(loop, source):
    publisher = start(loop, source, hold_while_blocked=True)
    loop.connection.block()
    batch = source.add(0)
    send(loop, publisher)
    assert loop.published == []
    loop.connection.unblock()
    assert [p.message_id for p in loop.published] == [batch.message_id]
    loop.channel.ack(1)
    assert outcome(batch) == "ok"


def test_a_new_connection_is_not_blocked_by_the_alarm_of_the_old_one(loop, source):
    # RabbitMQ says connection.blocked only to a connection that publishes during an
    # alarm, and unblocked only to one it blocked: a flag left over from the lost
    # connection would hold every batch on the new one forever.
    publisher = start(loop, source, hold_while_blocked=True)
    loop.connection.block()
    loop.connection.lose(pika.exceptions.ConnectionBlockedTimeout("blocked for 30s"))
    batch = source.add(0)
    loop.advance(0.2)
    assert loop.connection.number == 2 and not publisher.blocked
    assert [p.message_id for p in loop.channel.published] == [batch.message_id]
    loop.channel.ack(1)
    assert outcome(batch) == "ok"


def test_a_sent_batch_that_outlives_the_outage_may_have_been_stored(loop, source):
    # Published, then the connection died before the confirm: RabbitMQ may hold it.
    publisher = start(loop, source, reconnect_attempts=100, max_inflight=1)
    sent_once, never_sent = source.add(0), source.add(1)  # the second waits its turn
    send(loop, publisher)
    assert [p.message_id for p in loop.published] == [sent_once.message_id]
    loop.broker_up = False
    loop.connection.lose()
    loop.advance(5.1)
    assert outcome(sent_once) == MAYBE_STORED
    assert outcome(never_sent) == NOT_STORED
    assert source.gave_up == []


def test_a_channel_closed_by_the_broker_reconnects_and_resends(loop, source):
    publisher = start(loop, source)
    batches = [source.add(0), source.add(1)]
    send(loop, publisher)
    loop.channel.close_by_broker()
    loop.advance(0.2)
    assert len(loop.connections) == 2 and loop.connections[0].is_closed
    assert sent(loop.channel) == sent(loop.connections[0].channel_)
    loop.channel.ack_all()
    assert [outcome(b) for b in batches] == ["ok", "ok"]


def test_a_publish_that_raises_is_kept_for_the_next_connection(loop, source):
    publisher = start(loop, source)
    batches = [source.add(0), source.add(0), source.add(0)]
    loop.channel.publish_error = pika.exceptions.StreamLostError("gone")
    send(loop, publisher)
    assert loop.connections[0].channel_.published == []  # the first raised; the rest waited
    assert loop.connections[0].is_closed
    loop.advance(0.2)
    assert len(loop.connections) == 2
    assert [p.message_id for p in loop.channel.published] == [b.message_id for b in batches]
    loop.channel.ack_all()
    assert [outcome(b) for b in batches] == ["ok"] * 3


def test_a_first_open_that_fails_is_retried(loop, source):
    loop.refusals = 1
    publisher = start(loop, source)
    assert not publisher.connected.is_set()
    batch = source.add(0)
    loop.advance(0.2)
    assert len(loop.connections) == 2 and publisher.connected.is_set()
    loop.channel.ack(1)
    assert outcome(batch) == "ok"


def test_no_more_than_max_inflight_batches_await_confirms(loop, source):
    publisher = start(loop, source, max_inflight=2)
    batches = [source.add(0) for _ in range(5)]
    send(loop, publisher)
    assert len(loop.published) == 2
    loop.channel.ack(1)
    assert len(loop.published) == 3 and publisher.inflight == 2
    loop.channel.ack(3, multiple=True)
    loop.channel.ack_all()
    assert [outcome(b) for b in batches] == ["ok"] * 5
    assert [p.message_id for p in loop.published] == [b.message_id for b in batches]
