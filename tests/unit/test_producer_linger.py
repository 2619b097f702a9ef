"""The Producer's batching on a fake loop: linger, size caps, seqs, the buffer, flush and close.

No server: the publisher runs on tests/unit/fakeloop.py, whose manual clock also
stamps the batches and times the linger, so no test sleeps to let time pass.
What is asserted is what reached the broker (batches, their writes and seqs)
and what each write's future says.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakeloop import FakeLoop, use_loop_clock

from liftline import codec
from liftline.errors import Timeout
from liftline.partitioning import partition_for
from liftline.producer.client import Producer
from liftline.settings import Settings
from liftline.tickets import Ticket

PARTITIONS = 4
LINGER_S = 0.010  # linger_ms=10: the polling loop ticks every 5 ms


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> FakeLoop:
    loop = FakeLoop()
    use_loop_clock(monkeypatch, loop)
    return loop


def make(loop: FakeLoop, *, max_buffered: int = 200_000, **settings: Any) -> Producer:
    """A connected Producer (no Redis, no topology) publishing on ``loop``."""
    producer = Producer(Settings(**{"partitions": PARTITIONS, "linger_ms": 10, **settings}),
                        producer_id="prod", declare=False, driver=loop,
                        max_buffered=max_buffered)
    loop.run_ready()
    assert producer.publisher.connected.is_set()
    return producer


def keys_in(partition: int, n: int) -> list[str]:
    """``n`` distinct keys that hash to ``partition``."""
    candidates = (f"key{i}" for i in itertools.count())
    return list(itertools.islice(
        (k for k in candidates if partition_for(k, PARTITIONS) == partition), n))


def stream(loop: FakeLoop) -> list[tuple[str, int, str, int, list[Any]]]:
    """(routing key, message id, producer, first seq, writes) of each published batch."""
    out = []
    for p in loop.published:
        producer_id, first_seq, writes = codec.unpack_batch(p.body)
        out.append((p.routing_key, p.message_id, producer_id, first_seq, writes))
    return out


def drive_until(loop: FakeLoop, done: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Run the loop (as its I/O thread) while another thread works, until ``done()``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the other thread never got there"
        loop.run_ready()
        threading.Event().wait(0.001)


def test_writes_within_linger_go_out_as_one_batch_per_partition(loop):
    producer = make(loop)
    keys = {0: keys_in(0, 3), 2: keys_in(2, 3)}
    futures = []
    for i in range(3):
        for partition in (0, 2):
            futures.append(producer.submit("set", keys[partition][i], i))
        loop.advance(0.002)
    assert loop.published == []  # 6 ms in: still lingering
    loop.advance(LINGER_S)
    assert sorted(stream(loop)) == [
        ("p0", "prod:0:1", "prod", 1, [["set", keys[0][i], i] for i in range(3)]),
        ("p2", "prod:2:1", "prod", 1, [["set", keys[2][i], i] for i in range(3)]),
    ]
    assert not any(f.done() for f in futures)
    loop.channel.ack_all()
    assert [f.result(0) for f in futures] == [
        Ticket(p, "prod", seq) for seq in (1, 2, 3) for p in (0, 2)]
    # The next write starts a new batch, with the next seq.
    later = producer.submit("set", keys[0][0], "again")
    loop.advance(2 * LINGER_S)
    assert stream(loop)[-1] == ("p0", "prod:0:4", "prod", 4, [["set", keys[0][0], "again"]])
    assert later.ticket == Ticket(0, "prod", 4)


def test_a_batch_is_sealed_at_batch_max_writes_without_waiting_for_linger(loop):
    producer = make(loop, batch_max_writes=3, linger_ms=1000)
    (key,) = keys_in(1, 1)
    futures = [producer.submit("incr", key, n) for n in range(7)]
    loop.run_ready()  # no time passes
    assert [(first, [w[2] for w in writes]) for _, _, _, first, writes in stream(loop)] == [
        (1, [0, 1, 2]), (4, [3, 4, 5])]
    loop.advance(1.0)
    assert [(first, len(writes)) for _, _, _, first, writes in stream(loop)] == [
        (1, 3), (4, 3), (7, 1)]
    loop.channel.ack_all()
    assert [f.result(0).seq for f in futures] == list(range(1, 8))


def test_a_submitter_does_not_queue_for_the_lock_another_thread_holds(loop):
    """Past a batch of staged writes, submit places them only if the Producer's lock is
    free: with the lock held elsewhere (here by this test, for the publisher's thread
    or another submitter), ten batches' worth of submits return at once, and the writes
    go out in submit order, numbered in that order, once the holder lets go."""
    producer = make(loop, batch_max_writes=3, linger_ms=1000)
    (key,) = keys_in(1, 1)
    futures: list[Any] = []
    with producer._lock:
        done = threading.Event()

        def submit_all() -> None:
            futures.extend(producer.submit("incr", key, n) for n in range(30))
            done.set()

        threading.Thread(target=submit_all).start()
        assert done.wait(5), "a submitter waited for the lock it found taken"
        assert loop.published == []  # nothing was placed meanwhile
    loop.advance(1.0)  # the publisher's next turn places and sends the staged writes
    sent = [(first, [w[2] for w in writes]) for _, _, _, first, writes in stream(loop)]
    assert sent == [(1 + 3 * i, [3 * i, 3 * i + 1, 3 * i + 2]) for i in range(10)]
    loop.channel.ack_all()
    assert [f.result(0).seq for f in futures] == list(range(1, 31))


def test_a_batch_is_sealed_before_it_would_pass_the_byte_cap(loop):
    cap = 1024
    producer = make(loop, batch_max_bytes=cap, linger_ms=1000)
    (key,) = keys_in(3, 1)
    packed = [codec.pack_write("append", key, f"{n:03}" + "x" * 197) for n in range(10)]
    for n in range(10):
        producer.submit("append", key, f"{n:03}" + "x" * 197)
    loop.advance(1.0)
    published = loop.published
    assert all(len(p.body) <= cap for p in published)
    sizes, index = [], 0
    for _, _, _, first, writes in stream(loop):
        assert first == index + 1
        sizes.append(sum(len(w) for w in packed[index:index + len(writes)]))
        index += len(writes)
    assert index == 10
    # Each batch is as full as the cap allows (256 bytes stay for the envelope).
    assert all(size <= cap - 256 for size in sizes)
    starts = list(itertools.accumulate(len(w) for _, _, _, _, w in stream(loop)))
    assert all(size + len(packed[start]) > cap - 256
               for size, start in zip(sizes, starts[:-1], strict=False))


def test_linger_zero_publishes_at_once(loop):
    producer = make(loop, linger_ms=0)
    start = loop.clock
    (key,) = keys_in(0, 1)
    first = producer.submit("set", key, 1)
    loop.run_ready()
    second = producer.submit("set", key, 2)
    loop.run_ready()
    assert loop.clock == start
    assert [(m, writes) for _, m, _, _, writes in stream(loop)] == [
        ("prod:0:1", [["set", key, 1]]), ("prod:0:2", [["set", key, 2]])]
    loop.channel.ack_all()
    assert (first.result(0), second.result(0)) == (Ticket(0, "prod", 1), Ticket(0, "prod", 2))


def test_seqs_per_partition_are_consecutive_and_tickets_name_their_write(loop):
    producer = make(loop, batch_max_writes=4)
    keys = [f"user{n % 13}" for n in range(60)]
    futures = []
    for n, key in enumerate(keys):
        futures.append(producer.submit("set", key, n))
        if n % 7 == 0:
            loop.advance(0.004)
    loop.advance(2 * LINGER_S)
    loop.channel.ack_all()
    # What the stream holds, write by write, keyed by (partition, seq).
    applied: dict[tuple[int, int], list[Any]] = {}
    next_seq = dict.fromkeys(range(PARTITIONS), 1)
    for routing_key, message_id, producer_id, first, writes in stream(loop):
        partition = int(routing_key[1:])
        assert (producer_id, message_id) == ("prod", f"prod:{partition}:{first}")
        assert first == next_seq[partition] and 1 <= len(writes) <= 4
        next_seq[partition] = first + len(writes)
        for offset, write in enumerate(writes):
            applied[(partition, first + offset)] = write
    tickets = [f.result(0) for f in futures]
    assert len(set(tickets)) == len(keys)
    for n, (key, ticket) in enumerate(zip(keys, tickets, strict=True)):
        assert (ticket.partition, ticket.producer_id) == (partition_for(key, PARTITIONS), "prod")
        assert applied[(ticket.partition, ticket.seq)] == ["set", key, n]
    assert len(applied) == len(keys)


def test_a_full_buffer_raises_timeout_while_nothing_is_confirmed(loop):
    """max_buffered counts writes until their confirm: handed to the publisher and
    published is not enough, an outage or a slow broker cannot grow it."""
    producer = make(loop, max_buffered=3, confirm_timeout_s=0.2)
    (key,) = keys_in(0, 1)
    for n in range(3):
        producer.submit("set", key, n)
    # Nothing runs the loop, so nothing leaves the buffer: the 4th waits, then gives up.
    with pytest.raises(Timeout, match="producer buffer full"):
        producer.submit("set", key, 3)
    loop.advance(LINGER_S * 2)  # published, not confirmed: still full
    assert len(loop.published) == 1
    with pytest.raises(Timeout, match="producer buffer full"):
        producer.submit("set", key, 3)
    loop.channel.ack_all()
    assert producer.submit("set", key, 4).ticket == Ticket(0, "prod", 4)


def test_a_full_buffer_blocks_a_writer_until_a_confirm_makes_room(loop):
    producer = make(loop, max_buffered=3)
    (key,) = keys_in(0, 1)
    for n in range(3):
        producer.submit("set", key, n)
    result: list[Any] = []
    writer = threading.Thread(target=lambda: result.append(producer.submit("set", key, 3)))
    writer.start()
    writer.join(0.1)
    assert writer.is_alive() and result == []
    loop.advance(LINGER_S * 2)  # the tick seals, takes and publishes the lingering batch
    writer.join(0.1)
    assert writer.is_alive() and result == []  # published is not confirmed
    loop.channel.ack_all()
    writer.join(5)
    assert not writer.is_alive()
    assert result[0].ticket == Ticket(0, "prod", 4)
    assert [[w[2] for w in writes] for _, _, _, _, writes in stream(loop)] == [[0, 1, 2]]


def test_a_failed_batch_makes_room_too(loop):
    """A batch that fails (here: its confirm never comes within confirm_timeout_s)
    leaves the buffer as a confirmed one does."""
    producer = make(loop, max_buffered=3, confirm_timeout_s=1.0)
    (key,) = keys_in(0, 1)
    futures = [producer.submit("set", key, n) for n in range(3)]
    loop.advance(LINGER_S * 2)
    assert len(loop.published) == 1
    loop.advance(1.5)  # no confirm: the batch expires
    assert all(f.exception(0) is not None for f in futures)
    assert producer.submit("set", key, 3).ticket.seq == 4


@pytest.mark.parametrize("published_before_flush", [False, True])
def test_flush_waits_for_the_confirms(loop, published_before_flush):
    producer = make(loop)
    futures = [producer.submit("set", keys_in(p, 1)[0], p) for p in (0, 1)]
    if published_before_flush:
        loop.advance(2 * LINGER_S)
        assert len(loop.published) == 2
    seen: list[list[bool]] = []

    def flush() -> None:
        producer.flush(timeout=5)
        seen.append([f.done() for f in futures])

    flusher = threading.Thread(target=flush)
    flusher.start()
    loop.advance(2 * LINGER_S)
    assert len(loop.published) == 2
    flusher.join(0.1)
    assert flusher.is_alive()
    loop.channel.ack(1)
    flusher.join(0.1)
    assert flusher.is_alive()
    loop.channel.ack(2)
    flusher.join(5)
    assert not flusher.is_alive() and seen == [[True, True]]
    assert [f.result(0) for f in futures] == [Ticket(0, "prod", 1), Ticket(1, "prod", 1)]


def test_close_publishes_waits_for_confirms_then_closes(loop):
    producer = make(loop)
    futures = [producer.submit("set", keys_in(p, 1)[0], p) for p in (2, 3)]
    closer = threading.Thread(target=producer.close, kwargs={"timeout": 5})
    closer.start()
    loop.advance(2 * LINGER_S)
    assert len(loop.published) == 2 and loop.connection.is_open
    closer.join(0.1)
    assert closer.is_alive()
    loop.channel.ack_all()
    drive_until(loop, lambda: not closer.is_alive())
    assert [f.result(0).seq for f in futures] == [1, 1]
    assert producer.publisher.halted and loop.connection.is_closed
    assert [e[0] for e in loop.events] == ["publish", "publish", "ack", "close"]
