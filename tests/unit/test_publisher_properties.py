"""ConfirmingPublisher under random broker behaviour: each batch settles once, and rightly.

Hypothesis plays a random sequence of new batches, acks and nacks (single or
multiple), returns, lost connections, channels closed by the broker, a broker
that refuses connections, resource alarms, failing publishes and the passing
of time. After every step it checks that no batch was settled twice, that a
success comes only from an ack of the batch's latest publish that was not
returned and came after every earlier publish of its channel was answered (an
ack that overtakes an unanswered publish is not believed: RabbitMQ 3.10 confirms
publishes it did not store after one it lost), that a nack is retried on a fresh
channel and fails its batch only at the nack limit, that a return fails exactly
its batch, that nothing expires early or says "not stored" after it was sent, and
that no channel carries a batch twice or a partition's batches out of order. At the
end the broker comes back and answers everything: every batch must then be settled.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
import pytest
from fakeloop import FakeLoop, Published, RecordedBatch, Source, outcome, use_loop_clock
from hypothesis import given, settings
from hypothesis import strategies as st

from liftline.queue.publisher import NACK_LIMIT, ConfirmingPublisher
from liftline.settings import Settings

TIMEOUT_S = 5.0
NACKED = f"PublishFailed: RabbitMQ nacked the batch {NACK_LIMIT} times; it was not stored"
EXPIRED = f"PublishFailed: not confirmed within {TIMEOUT_S}s; "
MAYBE_STORED = EXPIRED + "the write may or may not have been stored"
NOT_STORED = EXPIRED + "the broker was unreachable or blocked; the write was not stored"


class Run:
    """One publisher on a fake loop, and what the test knows happened to each batch."""

    def __init__(self, loop: FakeLoop, hold_while_blocked: bool, attempts: int) -> None:
        self.loop = loop
        self.source = Source()
        self.attempts = attempts
        self.publisher = ConfirmingPublisher(
            Settings(linger_ms=100, confirm_timeout_s=TIMEOUT_S, reconnect_attempts=attempts,
                     reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.5),
            self.source, self.source.give_up, driver=loop, max_inflight=4,
            hold_while_blocked=hold_while_blocked)
        self.by_id: dict[str, RecordedBatch] = {}
        self.nacks: dict[str, int] = {}  # message id -> nacks it got
        self.nacked_tags: dict[int, set[int]] = {}  # id(channel) -> its nacked tags
        self.publisher.start()
        loop.run_ready()

    # -- the broker's moves -----------------------------------------------------
    def step(self, event: tuple[Any, ...]) -> None:
        before = {id(b): outcome(b) for b in self.source.batches}
        seen = len(self.loop.published)
        expected: dict[int, str] = {}  # batch -> outcome this step must give it
        kind, *args = event
        conn = self.loop.connections[-1] if self.loop.connections else None
        channel = conn.channels[-1] if conn and conn.is_open and conn.channels else None
        usable = channel is not None and channel.is_open and channel.confirming
        if kind == "add":
            batch = self.source.add(args[0])
            self.by_id[batch.message_id] = batch
            self.publisher.wake()
            self.loop.run_ready()
        elif kind in ("ack", "nack") and usable and channel.unanswered:
            index, multiple = args
            tags = channel.unanswered
            tag = tags[index % len(tags)]
            covered = [t for t in tags if t <= tag] if multiple else [tag]
            nacked = self.nacked_tags.setdefault(id(channel), set())
            if kind == "nack":
                nacked.update(covered)
            answered = channel.confirmed | set(covered)
            # Believed: the acks with every earlier publish of the channel answered,
            # up to the first nack.
            for t in range(1, len(channel.published) + 1):
                if t not in answered or t in nacked:
                    break
                batch = self.batch_of(channel.published[t - 1])
                if not batch.done:
                    expected[id(batch)] = (unroutable(batch.partition) if t in channel.returned
                                           else "ok")
            for t in covered if kind == "nack" else []:
                batch = self.batch_of(channel.published[t - 1])
                if batch.done:
                    continue
                self.nacks[batch.message_id] = self.nacks.get(batch.message_id, 0) + 1
                expected[id(batch)] = NACKED if self.nacks[batch.message_id] >= NACK_LIMIT \
                    else "pending"
            (channel.ack if kind == "ack" else channel.nack)(tag, multiple)
        elif kind == "return" and usable:
            open_tags = [t for t in channel.unanswered if t not in channel.returned]
            if open_tags:
                channel.return_unroutable(open_tags[args[0] % len(open_tags)])
        elif kind == "lose" and conn is not None and conn.is_open:
            conn.lose()
        elif kind == "close_channel" and usable:
            channel.close_by_broker()
        elif kind == "broker":
            self.loop.broker_up = args[0]
        elif kind == "block" and conn is not None and conn.is_open:
            conn.block()
        elif kind == "unblock" and conn is not None and conn.is_open:
            conn.unblock()
        elif kind == "publish_error" and usable:
            channel.publish_error = pika.exceptions.StreamLostError("socket gone")
        elif kind == "tick":
            self.loop.advance(args[0])
        self.check(kind, before, expected, self.loop.published[seen:])

    def batch_of(self, published: Published) -> RecordedBatch:
        return self.by_id[published.message_id]

    # -- what must hold after every move ----------------------------------------------
    def check(self, kind: str, before: dict[int, str], expected: dict[int, str],
              new: list[Published]) -> None:
        for batch in self.source.batches:
            assert len(batch.settles) <= 1, f"{batch.message_id} settled twice"
            was, now = before.get(id(batch), "pending"), outcome(batch)
            if id(batch) in expected:
                assert now == expected[id(batch)], batch.message_id
            elif was != now:
                # Nothing but a confirm of its latest publish settles a batch as ok,
                # and only the clock (expiry, the reconnect budget) or a stop fails it
                # without one.
                assert was == "pending" and now != "ok", (kind, batch.message_id, now)
                self.check_unconfirmed_failure(batch, now)
        for published in new:
            assert before.get(id(self.batch_of(published)), "pending") == "pending", \
                f"{published.message_id} published after it was settled"
        for channel in [c for conn in self.loop.connections for c in conn.channels]:
            published = channel.published
            ids = [p.message_id for p in published]
            assert len(ids) == len(set(ids)), "a channel carried a batch twice"
            for partition in {self.batch_of(p).partition for p in published}:
                seqs = [self.batch_of(p).first_seq for p in published
                        if self.batch_of(p).partition == partition]
                assert seqs == sorted(seqs), f"partition {partition} out of order"

    def check_unconfirmed_failure(self, batch: RecordedBatch, now: str) -> None:
        if now.startswith(EXPIRED):
            assert self.loop.clock - batch.created > TIMEOUT_S, "expired early"
            ever_sent = any(p.message_id == batch.message_id for p in self.loop.published)
            assert now == (MAYBE_STORED if ever_sent else NOT_STORED)
        else:
            assert now.startswith("BrokerUnavailable: RabbitMQ at "), now
            assert f"unreachable after {self.attempts} attempts" in now

    def finish(self, stop: bool) -> None:
        """The broker comes back for good and answers everything; all must settle.

        A batch added now must get through, before a stop too: a healthy broker
        that answers everything leaves no reason to fail it. With ``stop`` the
        publisher is stopped right after that batch: it must halt as well.
        """
        self.loop.broker_up = True
        self.loop.refusals = 0
        for conn in self.loop.connections:
            for channel in conn.channels:
                channel.publish_error = None  # no socket dies from now on
        self.step(("add", 0))
        fresh = self.source.batches[-1]
        if stop:
            self.publisher.begin_stop()
            self.step(("tick", 0.0))
        for _ in range(400):
            if all(b.done for b in self.source.batches) and (self.publisher.halted or not stop):
                break
            conn = self.loop.connections[-1]
            if conn.is_open:
                self.step(("unblock",))
                self.step(("ack", -1, True))  # the newest unanswered, and all before it
            self.step(("tick", 0.5))
        pending = [b.message_id for b in self.source.batches if not b.done]
        assert pending == [], "never settled"
        assert all(len(b.settles) == 1 for b in self.source.batches)
        assert outcome(fresh) == "ok"
        if stop:
            assert self.publisher.halted and self.loop.connections[-1].is_closed


def unroutable(partition: int) -> str:
    return (f"PublishFailed: batch for partition {partition} was unroutable"
            " (is the cluster's topology declared?)")


EVENTS = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2)),
    st.tuples(st.just("ack"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("nack"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("return"), st.integers(0, 7)),
    st.tuples(st.just("lose")),
    st.tuples(st.just("close_channel")),
    st.tuples(st.just("broker"), st.booleans()),
    st.tuples(st.just("block")),
    st.tuples(st.just("unblock")),
    st.tuples(st.just("publish_error")),
    st.tuples(st.just("tick"), st.floats(0.01, 3.0)),
)


@settings(max_examples=500, deadline=None, database=None)
@given(events=st.lists(EVENTS, min_size=5, max_size=80), hold_while_blocked=st.booleans(),
       stop=st.booleans(), attempts=st.sampled_from([3, 40]))
def test_every_batch_settles_once_and_only_as_the_broker_answered(
        events, hold_while_blocked, stop, attempts):
    # 3 attempts give up within a second; 40 ride out outages longer than the timeout.
    with pytest.MonkeyPatch.context() as monkeypatch:
        loop = FakeLoop()
        use_loop_clock(monkeypatch, loop)
        run = Run(loop, hold_while_blocked, attempts)
        for event in events:
            run.step(event)
        run.finish(stop)
