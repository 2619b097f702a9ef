"""Producer ids expire by age: bounded watermarks, never a batch applied twice.

Pure: PartitionStore with a small ``producer_id_ttl_s``, ids made at chosen
times, a Redis copy folded from the flush batches, and the Producer's renewal of
its own id on the fake loop.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from fakeloop import FakeLoop, use_loop_clock
from hypothesis import given, settings
from hypothesis import strategies as st
from partition_stream import decoded

from liftline import codec
from liftline.partitioning import partition_for
from liftline.producer import client as producer_client
from liftline.producer.client import Producer
from liftline.settings import Settings
from liftline.store.memory import FlushBatch, PartitionStore
from liftline.tickets import id_created, new_producer_id

TTL = 100


def made_at(t: int) -> str:
    return new_producer_id(now=t)


def ttl_store() -> PartitionStore:
    return PartitionStore(0, producer_id_ttl_s=TTL)


def test_an_id_carries_its_creation_time_and_a_foreign_id_none() -> None:
    pid = new_producer_id(now=1_700_000_123.9)
    assert id_created(pid) == 1_700_000_123
    assert len(pid) == 21 and new_producer_id(now=5) != new_producer_id(now=5)
    for foreign in ("prod", "9f2c1a7be04d5c11", "6790a1b2-9f2c1a7be04D", "6790a1b2-9f2c1a7be04d5",
                    "x6790a1b2-9f2c1a7be04d"):
        assert id_created(foreign) is None


def test_old_ids_are_forgotten_once_a_newer_id_moves_the_clock() -> None:
    store = ttl_store()
    old, new = made_at(1000), made_at(1101)
    store.apply_batch(0, old, 1, [["incr", "n", 1]])
    store.take_flush()
    assert store.horizon == 1000 - TTL and old in store.watermarks
    store.apply_batch(1, new, 1, [["incr", "n", 1]])
    assert store.clock == 1101 and store.horizon == 1001
    assert store.watermarks == {new: 1}
    assert store.expired(old) and not store.expired(new)
    flushed = store.take_flush()
    assert flushed.expired == [old] and flushed.watermarks == {new: 1}
    assert flushed.horizon == 1001


def test_a_retry_inside_the_window_is_skipped_and_one_outside_it_refused() -> None:
    store = ttl_store()
    first = made_at(1000)
    store.apply_batch(0, first, 1, [["incr", "n", 1], ["incr", "n", 1]])
    store.apply_batch(1, made_at(1099), 1, [["incr", "m", 1]])  # horizon 999: first still in
    assert store.apply_batch(2, first, 1, [["incr", "n", 1], ["incr", "n", 1]]) == 0
    assert store.get("n") == (2, 2) and store.skipped_duplicates == 2 and not store.dead
    store.apply_batch(3, made_at(1200), 1, [["incr", "m", 1]])  # horizon 1100: first expires
    assert store.apply_batch(4, first, 1, [["incr", "n", 1], ["incr", "n", 1]]) == 0
    assert store.get("n") == (2, 2)
    (letter,) = store.dead
    assert letter.producer_id == first and letter.seq == 1 and letter.offset == 4
    assert "producer id expired" in letter.reason
    # Reads after a ticket of an expired id do not wait for ever: nothing of it can apply.
    assert store.applied(first, 99)


def test_ids_without_a_time_never_expire() -> None:
    store = ttl_store()
    store.apply_batch(0, "prod", 1, [["set", "k", 1]])
    store.apply_batch(1, made_at(10**6), 1, [["set", "k", 2]])
    assert store.watermarks["prod"] == 1 and not store.expired("prod")
    assert store.apply_batch(2, "prod", 1, [["set", "k", 3]]) == 0  # still a duplicate
    assert store.get("k") == (2, 2)


def test_without_a_ttl_nothing_expires() -> None:
    store = PartitionStore(0)
    old = made_at(1000)
    store.apply_batch(0, old, 1, [["set", "k", 1]])
    store.apply_batch(1, made_at(10**9), 1, [["set", "k", 2]])
    assert old in store.watermarks and store.horizon == 0 and not store.expired(old)


def test_a_failed_flush_puts_the_watermark_changes_back() -> None:
    store = ttl_store()
    old = made_at(1000)
    store.apply_batch(0, old, 1, [["set", "k", 1]])
    store.take_flush()
    store.apply_batch(1, made_at(1200), 1, [["set", "k", 2]])
    failed = store.take_flush()
    store.restore_unflushed(failed)
    again = store.take_flush()
    assert again.expired == [old] and list(again.watermarks) == list(failed.watermarks)


def test_a_standby_prunes_flushed_watermark_changes() -> None:
    store = ttl_store()
    store.apply_batch(0, made_at(1000), 1, [["set", "k", 1]])
    store.apply_batch(1, made_at(1001), 1, [["set", "k", 2]])
    store.prune(0)
    assert list(store.wm_dirty.values()) == [1]


# -- replicas agree, whatever the snapshot they started from --------------------

class RedisCopy:
    """What Redis holds after the flushes: data, watermarks, offset, horizon."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.watermarks: dict[str, int] = {}
        self.offset = -1
        self.horizon = 0

    def flush(self, batch: FlushBatch) -> None:
        for key, entry in batch.changed:
            self.data[key] = entry
        for key in batch.deleted:
            self.data.pop(key, None)
        self.watermarks.update(batch.watermarks)
        for pid in batch.expired:
            self.watermarks.pop(pid, None)
        self.offset, self.horizon = batch.offset, batch.horizon


def live_marks(store: PartitionStore) -> dict[str, int]:
    return {pid: seq for pid, seq in store.watermarks.items() if not store.expired(pid)}


batches = st.lists(
    st.tuples(st.integers(0, 5),            # which producer
              st.integers(0, 3),            # seq rewind: 0 is new, more is a retry
              st.integers(1, 3),            # writes
              st.booleans()),               # flush after it
    min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(batches, st.integers(0, 59))
def test_a_replica_from_any_snapshot_ends_where_the_primary_ends(
        plan: list[tuple[int, int, int, bool]], cut: int) -> None:
    # Producer k is made at 1000 + 40 k: with TTL 100 the early ones expire as the
    # later ones appear, and their retries come too late.
    ids = [made_at(1000 + 40 * k) for k in range(6)]
    sent = [0] * 6
    stream: list[tuple[str, int, list[Any]]] = []
    for k, rewind, n, _ in plan:
        first = max(1, sent[k] + 1 - rewind)
        stream.append((ids[k], first, [["incr", f"c{k}", 1] for _ in range(n)]))
        sent[k] = max(sent[k], first + n - 1)
    primary, redis_copy = ttl_store(), RedisCopy()
    for offset, (pid, first, writes) in enumerate(stream):
        primary.apply_batch(offset, pid, first, writes)
        if plan[offset][3]:
            redis_copy.flush(primary.take_flush())
        if offset == min(cut, len(stream) - 1):
            snapshot = (dict(redis_copy.data), redis_copy.offset, dict(redis_copy.watermarks))
    redis_copy.flush(primary.take_flush())
    replica = ttl_store()
    replica.load(snapshot[0], snapshot[1], snapshot[2])
    for offset, (pid, first, writes) in enumerate(stream):
        replica.apply_batch(offset, pid, first, writes)
    assert decoded(replica.data) == decoded(primary.data)
    assert live_marks(replica) == live_marks(primary)
    assert replica.horizon == primary.horizon
    # Redis' copy after the last flush is the primary's state, expired ids gone.
    assert decoded(redis_copy.data) == decoded(primary.data)
    assert redis_copy.watermarks == primary.watermarks
    # Never twice: each counter is at most what its producer sent.
    for k in range(6):
        assert decoded(primary.data).get(f"c{k}", [0])[0] <= sent[k]


# -- the Producer renews its own id halfway through the window --------------------

def renewing_producer(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeLoop, list[float], Producer]:
    """A Producer on the fake loop with a 60 s id window and a wall clock the test sets."""
    loop = FakeLoop()
    use_loop_clock(monkeypatch, loop)
    wall = [1_000_000.0]
    monkeypatch.setattr(producer_client, "time",
                        SimpleNamespace(monotonic=loop.now, time=lambda: wall[0]))
    producer = Producer(Settings(partitions=2, linger_ms=10, producer_id_ttl_s=60),
                        declare=False, driver=loop)
    loop.run_ready()
    return loop, wall, producer


def test_the_producer_takes_a_new_id_halfway_and_keeps_each_batch_under_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop, wall, producer = renewing_producer(monkeypatch)
    first_id = producer.producer_id
    assert id_created(first_id) is not None
    before = [producer.submit("incr", f"k{i}", 1) for i in range(4)]
    loop.advance(0.05)  # those batches go out; the next writes open new ones
    wall[0] += 31  # past half of the 60 s window
    after = [producer.submit("incr", f"k{i}", 1) for i in range(4)]
    loop.advance(0.05)
    loop.channel.ack_all()
    loop.run_ready()
    tickets_before = [f.result(0) for f in before]
    tickets_after = [f.result(0) for f in after]
    assert {t.producer_id for t in tickets_before} == {first_id}
    assert {t.producer_id for t in tickets_after} == {producer.producer_id} != {first_id}
    for tickets in (tickets_before, tickets_after):
        for partition in {t.partition for t in tickets}:
            assert sorted(t.seq for t in tickets if t.partition == partition) == \
                list(range(1, 1 + sum(t.partition == partition for t in tickets)))
    bodies = [codec.unpack_batch(p.body) for p in loop.published]
    assert {pid for pid, _, _ in bodies} == {first_id, producer.producer_id}
    assert sum(len(w) for _, _, w in bodies) == 8


def test_a_producer_id_given_by_the_caller_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = FakeLoop()
    use_loop_clock(monkeypatch, loop)
    monkeypatch.setattr(producer_client, "time",
                        SimpleNamespace(monotonic=loop.now, time=lambda: time.time() + 10**6))
    producer = Producer(Settings(partitions=2, producer_id_ttl_s=60), producer_id="mine",
                        declare=False, driver=loop)
    loop.run_ready()
    producer.submit("incr", "k", 1)
    assert producer.producer_id == "mine"


def test_a_renewal_seals_the_open_batches_under_the_old_id(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop, wall, producer = renewing_producer(monkeypatch)
    k0 = next(f"a{i}" for i in range(100) if partition_for(f"a{i}", 2) == 0)
    k1 = next(f"b{i}" for i in range(100) if partition_for(f"b{i}", 2) == 1)
    old = producer.submit("incr", k0, 1)
    assert old.ticket.seq == 1                      # placed: opens partition 0's batch
    wall[0] += 31
    fresh = producer.submit("incr", k1, 1)          # opens partition 1's: the id renews
    also = producer.submit("incr", k0, 1)           # partition 0 again, under the new id
    loop.advance(0.05)
    loop.channel.ack_all()
    loop.run_ready()
    t_old, t_fresh, t_also = old.result(0), fresh.result(0), also.result(0)
    assert t_old.producer_id != t_fresh.producer_id == t_also.producer_id
    assert (t_old.seq, t_fresh.seq, t_also.seq) == (1, 1, 1)
    bodies = sorted((pid, seq, len(w)) for pid, seq, w in
                    (codec.unpack_batch(p.body) for p in loop.published))
    assert len(bodies) == 3 and sum(n for _, _, n in bodies) == 3


def test_a_submit_many_call_renews_first_so_all_its_writes_share_one_id(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop, wall, producer = renewing_producer(monkeypatch)
    first_id = producer.producer_id
    assert producer.submit("incr", "warm", 1).ticket.seq == 1  # placed: an open batch
    wall[0] += 31                                                # under the first id
    futures = producer.submit_many([("incr", f"k{i}", 1) for i in range(20)])
    loop.advance(0.05)
    loop.channel.ack_all()
    loop.run_ready()
    tickets = futures.result(0)
    assert {t.producer_id for t in tickets} == {producer.producer_id} != {first_id}
    for partition in {t.partition for t in tickets}:
        seqs = [t.seq for t in tickets if t.partition == partition]
        assert seqs == list(range(1, len(seqs) + 1))
    bodies = [codec.unpack_batch(p.body) for p in loop.published]
    assert sum(len(w) for _, _, w in bodies) == 21
    assert {pid for pid, _, _ in bodies} == {first_id, producer.producer_id}
