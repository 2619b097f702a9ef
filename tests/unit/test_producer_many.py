"""Producer.submit_many on a fake loop: what reached the broker, and what each future says.

The same fake loop and manual clock as test_producer_linger.py: no server, no sleep.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fakeloop import FakeLoop, use_loop_clock
from test_producer_linger import LINGER_S, PARTITIONS, keys_in, make, stream

from liftline import codec
from liftline.app import App
from liftline.errors import InvalidWrite, LiftlineError, PublishFailed, Timeout
from liftline.partitioning import partition_for
from liftline.queue.publisher import NACK_LIMIT
from liftline.tickets import Ticket


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> FakeLoop:
    loop = FakeLoop()
    use_loop_clock(monkeypatch, loop)
    return loop


def applied(loop: FakeLoop) -> dict[tuple[int, int], list[Any]]:
    """(partition, seq) -> write, of everything published; checks each batch's envelope."""
    out: dict[tuple[int, int], list[Any]] = {}
    next_seq = dict.fromkeys(range(PARTITIONS), 1)
    for routing_key, message_id, producer_id, first, writes in stream(loop):
        partition = int(routing_key[1:])
        assert (producer_id, message_id) == ("prod", f"prod:{partition}:{first}")
        assert first == next_seq[partition], "seqs of a partition are consecutive"
        next_seq[partition] = first + len(writes)
        for offset, write in enumerate(writes):
            out[(partition, first + offset)] = write
    return out


def test_every_write_goes_out_in_order_and_its_ticket_names_it(loop):
    producer = make(loop)
    writes: list[tuple[Any, ...]] = [("set", f"user{n % 11}", n) for n in range(40)]
    writes += [("append", "list", 7, 3), ("cas", "doc", {"v": 1}, 0), ("delete", "user1", None)]
    futures = producer.submit_many(writes)
    assert len(futures) == 43
    assert not futures.done()
    loop.advance(2 * LINGER_S)
    # One batch per partition touched: the call lingers like single writes do.
    touched = {partition_for(w[1], PARTITIONS) for w in writes}
    assert len(loop.published) == len(touched)
    loop.channel.ack_all()
    tickets = futures.result(0)
    assert futures.done() and futures.exception(0) is None and futures.failed() == []
    assert tickets == futures.tickets() == [f.result(0) for f in futures]
    assert len(set(tickets)) == 43
    by_seq = applied(loop)
    assert len(by_seq) == 43
    for write, ticket in zip(writes, tickets, strict=True):
        assert (ticket.partition, ticket.producer_id) == (partition_for(write[1], PARTITIONS),
                                                          "prod")
        expected = list(write) if len(write) == 4 else list(write[:3])
        assert by_seq[(ticket.partition, ticket.seq)] == expected
    # Within a partition, seqs follow the list's order.
    for partition in touched:
        seqs = [t.seq for t in tickets if t.partition == partition]
        assert seqs == list(range(1, len(seqs) + 1))


def test_calls_and_single_writes_share_one_seq_line_per_partition(loop):
    producer = make(loop)
    (key,) = keys_in(2, 1)
    first = producer.submit("incr", key, 1)
    many = producer.submit_many([("incr", key, n) for n in range(2, 6)])
    last = producer.submit("incr", key, 6)
    loop.advance(2 * LINGER_S)
    loop.channel.ack_all()
    assert first.result(0) == Ticket(2, "prod", 1)
    assert [t.seq for t in many.result(0)] == [2, 3, 4, 5]
    assert last.result(0) == Ticket(2, "prod", 6)
    assert [w[2] for w in applied(loop).values()] == [1, 2, 3, 4, 5, 6]


def test_a_call_larger_than_a_batch_is_split_at_batch_max_writes(loop):
    producer = make(loop, batch_max_writes=3, linger_ms=1000)
    (key,) = keys_in(1, 1)
    futures = producer.submit_many([("incr", key, n) for n in range(8)])
    loop.run_ready()  # full batches go out at once, without lingering
    assert [(first, [w[2] for w in writes]) for _, _, _, first, writes in stream(loop)] == [
        (1, [0, 1, 2]), (4, [3, 4, 5])]
    assert len(futures.batches) == 3
    (share,) = futures.shares()
    assert (share.partition, share.writes, share.first_seq) == (1, 8, 1)
    assert share.batches == futures.batches
    loop.channel.ack(1)
    assert [futures[i].done() for i in range(8)] == [True] * 3 + [False] * 5
    assert futures[2].result(0) == Ticket(1, "prod", 3)
    with pytest.raises(Timeout):
        futures.result(0)
    loop.advance(1.0)
    loop.channel.ack_all()
    assert [t.seq for t in futures.result(0)] == list(range(1, 9))
    assert [f.ticket.seq for f in futures[-3:]] == [6, 7, 8]
    assert futures[-1].ticket == futures[7].ticket == Ticket(1, "prod", 8)


def test_a_call_is_split_before_a_batch_would_pass_the_byte_cap(loop):
    cap = 1024
    producer = make(loop, batch_max_bytes=cap, linger_ms=1000)
    (key,) = keys_in(3, 1)
    (other,) = keys_in(0, 1)
    producer.submit("append", key, "y" * 300)  # an open batch the call goes on filling
    writes = [("append", key, f"{n:03}" + "x" * 197) for n in range(10)]
    futures = producer.submit_many([*writes, ("set", other, 1)])
    loop.advance(1.0)
    assert all(len(p.body) <= cap for p in loop.published)
    sizes = [sum(len(codec.pack([*w[:3]])) for w in ws)
             for rk, _, _, _, ws in stream(loop) if rk == "p3"]
    assert all(size <= cap - 256 for size in sizes)
    loop.channel.ack_all()
    tickets = futures.result(0)
    assert [t.seq for t in tickets] == [*range(2, 12), 1]
    got = applied(loop)
    assert [got[(3, seq)][2] for seq in range(2, 12)] == [w[2] for w in writes]
    assert sorted((s.partition, s.writes, s.first_seq) for s in futures.shares()) == [
        (0, 1, 1), (3, 10, 2)]
    assert got[(0, 1)] == ["set", other, 1]


def test_one_bad_write_refuses_the_whole_call_and_sends_nothing(loop):
    producer = make(loop)
    good = [("incr", "a", 1), ("incr", "b", 2)]
    with pytest.raises(InvalidWrite, match=r"write 2: incr needs an int or float"):
        producer.submit_many([*good, ("incr", "c", "three")])
    with pytest.raises(InvalidWrite, match=r"write 1: expected \(op, key, value\)"):
        producer.submit_many([good[0], ("incr", "c")])
    with pytest.raises(InvalidWrite, match="write 0: key must not be empty"):
        producer.submit_many([("set", "", 1)])
    loop.advance(2 * LINGER_S)
    assert loop.published == []
    # Nothing was queued: the next write still gets seq 1.
    assert producer.submit("incr", "a", 1).ticket.seq == 1


def test_an_unknown_op_of_the_app_is_refused(loop):
    app = App()

    @app.reducer("lift_ride")
    def lift_ride(current: Any, value: Any) -> Any:
        return value

    producer = make(loop)
    producer.app = app
    with pytest.raises(InvalidWrite, match="write 1: unknown op 'lift'"):
        producer.submit_many([("lift_ride", "k", 1), ("lift", "k", 1)])
    assert len(producer.submit_many([("lift_ride", "k", 1), ("incr", "n", 1)])) == 2


def test_a_failed_batch_fails_only_the_writes_it_carries(loop):
    producer = make(loop)
    keys = {p: keys_in(p, 2) for p in (0, 1)}
    writes = [("set", keys[0][0], 1), ("set", keys[1][0], 2), ("set", keys[0][1], 3),
              ("set", keys[1][1], 4)]
    futures = producer.submit_many(writes)
    loop.advance(2 * LINGER_S)
    # The p1 batch is nacked on every fresh channel until the publisher gives it up.
    for _ in range(NACK_LIMIT):
        tags = {p.routing_key: p.tag for p in loop.channel.published}
        loop.channel.nack(tags["p1"])
    tags = {p.routing_key: p.tag for p in loop.channel.published}
    loop.channel.ack(tags["p0"])
    assert futures.done()
    assert futures.failed() == [1, 3]
    assert isinstance(futures.exception(0), PublishFailed)
    with pytest.raises(PublishFailed, match="nacked"):
        futures.result(0)
    assert [futures[i].exception(0) is None for i in range(4)] == [True, False, True, False]
    assert [futures[i].result(0).seq for i in (0, 2)] == [1, 2]


def test_an_empty_call_is_done_at_once(loop):
    producer = make(loop)
    futures = producer.submit_many([])
    assert len(futures) == 0 and futures.done() and futures.result(0) == []
    loop.advance(2 * LINGER_S)
    assert loop.published == []


def test_a_closed_producer_refuses_a_call(loop):
    producer = make(loop)
    closer = threading.Thread(target=producer.close, kwargs={"timeout": 5})
    closer.start()
    try:
        with pytest.raises(LiftlineError, match="closed"):
            deadline = 1000
            while deadline:
                producer.submit_many([("incr", "a", 1)])
                loop.run_ready()
                deadline -= 1
                threading.Event().wait(0.001)
    finally:
        while closer.is_alive():
            loop.advance(LINGER_S)
            loop.channel.ack_all()
            closer.join(0.01)


def test_a_call_waits_while_the_buffer_is_full(loop):
    producer = make(loop, max_buffered=3)
    (key,) = keys_in(0, 1)
    producer.submit_many([("set", key, n) for n in range(3)])
    result: list[Any] = []
    writer = threading.Thread(
        target=lambda: result.append(producer.submit_many([("set", key, n) for n in (3, 4)])))
    writer.start()
    writer.join(0.1)
    assert writer.is_alive() and result == []
    loop.advance(2 * LINGER_S)  # the tick seals, takes and publishes the lingering batch
    writer.join(0.1)
    assert writer.is_alive() and result == []  # published is not confirmed
    loop.channel.ack_all()
    writer.join(5)
    assert not writer.is_alive()
    assert [t.seq for t in result[0].tickets()] == [4, 5]


def test_threads_calling_at_once_never_interleave_within_a_call(loop):
    producer = make(loop, batch_max_writes=50)
    threads, calls, size = 4, 25, 20
    results: dict[int, list[Any]] = {n: [] for n in range(threads)}

    def work(n: int) -> None:
        for c in range(calls):
            writes = [("set", f"user{i % 9}", [n, c, i]) for i in range(size)]
            results[n].append(producer.submit_many(writes))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    deadline = 0
    while any(w.is_alive() for w in workers):
        loop.advance(LINGER_S)
        # The broker confirms as it goes: fake time spent waiting on slow threads must
        # not read as a confirm stall (which gives the channel up and republishes).
        loop.channel.ack_all()
        deadline += 1
        assert deadline < 10_000
    loop.advance(2 * LINGER_S)
    loop.channel.ack_all()
    by_seq = applied(loop)
    assert len(by_seq) == threads * calls * size
    seen = set()
    for n, futures_list in results.items():
        for c, futures in enumerate(futures_list):
            tickets = futures.result(0)
            for i, ticket in enumerate(tickets):
                assert by_seq[(ticket.partition, ticket.seq)] == ["set", f"user{i % 9}", [n, c, i]]
                seen.add(ticket)
            # One call's writes to a partition have consecutive seqs: no other write between.
            for partition in {t.partition for t in tickets}:
                seqs = [t.seq for t in tickets if t.partition == partition]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(seen) == threads * calls * size
