"""Gaps in a producer's sequence (liftline.store.gaps, PartitionStore.apply_batch).

A batch that starts past its producer's watermark + 1 opens a gap: a dead letter
names the producer and the missing seqs, the store counts it, and a copy of the
missing writes that arrives later (a re-send) is applied once, however it is cut.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from liftline.store.gaps import MAX_RANGES, Gaps
from liftline.store.memory import FlushBatch, PartitionStore


def appends(first: int, count: int, key: str = "log") -> list[Any]:
    """``count`` appends of the seqs themselves: the final list says what was applied."""
    return [["append", key, first + i, 1_000_000] for i in range(count)]


class Feed:
    """Feeds batches (producer, first seq, count) to a store at consecutive offsets."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.offset = -1

    def __call__(self, producer: str, first: int, count: int) -> int:
        self.offset += 1
        return self.store.apply_batch(self.offset, producer, first, appends(first, count))


def new_store() -> PartitionStore:
    return PartitionStore(2)


def applied(store: PartitionStore, key: str = "log") -> list[int]:
    got = store.get(key)
    return [] if got is None else list(got[0])


def test_a_batch_past_the_watermark_opens_a_gap_reported_as_a_dead_letter() -> None:
    store = new_store()
    feed = Feed(store)
    feed("prod", 1, 3)
    assert feed("prod", 7, 3) == 3  # 4-6 never reached the stream (yet): 7-9 still apply
    assert applied(store) == [1, 2, 3, 7, 8, 9]
    assert store.watermarks == {"prod": 9}
    assert store.missing == 3 and store.gaps_opened == 1
    assert store.gaps.of("prod") == [[4, 6]]
    [letter] = store.dead
    assert (letter.partition, letter.offset, letter.producer_id, letter.seq, letter.op) == (
        2, 1, "prod", 4, "gap")
    assert "producer prod seqs 4-6 (3 writes) missing" in letter.reason
    assert not store.applied("prod", 5) and store.applied("prod", 7)


def test_a_late_copy_fills_the_gap_once_and_a_third_copy_is_skipped() -> None:
    store = new_store()
    feed = Feed(store)
    feed("prod", 1, 3)
    feed("prod", 7, 3)
    assert feed("prod", 4, 3) == 3
    assert applied(store) == [1, 2, 3, 7, 8, 9, 4, 5, 6]
    assert store.missing == 0 and store.gaps_filled == 3 and store.gaps.of("prod") == []
    assert feed("prod", 4, 3) == 0
    assert store.skipped_duplicates == 3
    assert store.applied("prod", 5)


def test_a_resend_that_straddles_the_gap_applies_only_what_was_missing() -> None:
    # What the publisher does after giving a stalled channel up: everything from the
    # first unconfirmed batch goes out again, some of it already stored.
    store = new_store()
    feed = Feed(store)
    feed("prod", 1, 3)
    feed("prod", 7, 3)
    assert feed("prod", 4, 9) == 6  # 4-6 fill the gap, 7-9 are repeats, 10-12 are new
    assert applied(store) == [1, 2, 3, 7, 8, 9, 4, 5, 6, 10, 11, 12]
    assert store.watermarks == {"prod": 12} and store.missing == 0


def test_a_partial_copy_leaves_the_rest_of_the_gap_open() -> None:
    store = new_store()
    feed = Feed(store)
    feed("prod", 1, 1)
    feed("prod", 10, 1)
    feed("prod", 4, 2)
    assert store.gaps.of("prod") == [[2, 3], [6, 9]] and store.missing == 6
    feed("prod", 2, 8)
    assert store.missing == 0
    assert sorted(applied(store)) == list(range(1, 11))


def test_a_producer_first_seen_past_seq_1_opens_a_gap_from_1() -> None:
    # Its first batches were refused (and it was told) or lost.
    store = new_store()
    Feed(store)("fresh", 5, 2)
    assert store.gaps.of("fresh") == [[1, 4]]
    assert store.dead[0].seq == 1


def test_gaps_of_one_producer_leave_the_others_alone() -> None:
    store = new_store()
    feed = Feed(store)
    feed("a", 1, 2)
    feed("b", 1, 2)
    feed("a", 5, 1)
    assert feed("b", 3, 1) == 1
    assert store.gaps.ranges == {"a": [[3, 4]]}


def test_past_max_ranges_the_oldest_gap_is_given_up_and_said_so() -> None:
    store = new_store()
    feed = Feed(store)
    for n in range(MAX_RANGES + 2):
        feed("prod", 1 + 2 * n, 1)  # every other seq missing: 2, 4, 6, ... 34
    assert len(store.gaps.of("prod")) == MAX_RANGES
    assert store.gaps.of("prod")[0] == [4, 4]
    assert "seqs 2-2 are given up" in store.dead[-1].reason
    assert feed("prod", 2, 1) == 0  # too late: skipped as a repeat


def test_a_flush_carries_changed_gaps_and_a_loaded_replica_fills_them_alike() -> None:
    primary = new_store()
    feed = Feed(primary)
    feed("prod", 1, 2)
    feed("prod", 6, 2)
    batch = primary.take_flush()
    assert batch.gaps == {"prod": [[3, 5]]} and not batch.empty
    assert primary.take_flush().gaps == {}  # unchanged since
    replica = new_store()
    replica.load(copy.deepcopy(primary.data), batch.offset, dict(primary.watermarks),
                 copy.deepcopy(batch.gaps))
    for store in (primary, replica):
        store.apply_batch(2, "prod", 3, appends(3, 3))
        assert applied(store) == [1, 2, 6, 7, 3, 4, 5]
    assert primary.take_flush().gaps == {"prod": []}  # filled: the flush clears it


def test_a_failed_flush_puts_its_gap_changes_back_and_a_prune_forgets_flushed_ones() -> None:
    store = new_store()
    feed = Feed(store)
    feed("prod", 1, 1)
    feed("prod", 3, 1)
    batch = store.take_flush()
    store.restore_unflushed(batch)
    assert store.take_flush().gaps == {"prod": [[2, 2]]}
    feed("prod", 2, 1)
    store.prune(flushed_offset=store.applied_offset)
    assert store.gaps_dirty == {} and not store.has_changes


def test_expired_producer_ids_take_their_gaps_with_them() -> None:
    from liftline.tickets import new_producer_id

    store = PartitionStore(0, producer_id_ttl_s=100)
    old, new = new_producer_id(1_000_000_000), new_producer_id(1_000_000_500)
    store.apply_batch(0, old, 1, appends(1, 1, "a"))
    store.apply_batch(1, old, 4, appends(4, 1, "a"))
    assert store.gaps.of(old) == [[2, 3]]
    store.apply_batch(2, new, 1, appends(1, 1, "b"))
    assert store.gaps.of(old) == []
    flushed = store.take_flush()
    assert old in flushed.expired


def test_gaps_fill_splits_ranges_and_returns_batch_indices() -> None:
    gaps = Gaps({"p": [[3, 5], [9, 12]]})
    assert gaps.fill("p", 4, 7) == [0, 1, 5, 6]  # seqs 4, 5, 9, 10
    assert gaps.of("p") == [[3, 3], [11, 12]]
    assert gaps.fill("p", 1, 2) == []
    assert gaps.fill("p", 3, 10) == [0, 8, 9]
    assert gaps.ranges == {} and not gaps


# -- the property: whatever is lost, repeated or re-sent late ---------------------------

# One producer's stream: each step sends a batch (count) that is stored, or lost (it
# leaves a gap), and sometimes re-sends an earlier range (the publisher's resend).
steps = st.lists(st.tuples(st.integers(1, 5), st.sampled_from(["stored", "lost", "resend"]),
                           st.integers(0, 30), st.integers(1, 12)), min_size=1,
                  max_size=2 * MAX_RANGES)  # never more gaps at once than are kept


@settings(max_examples=300, deadline=None)
@given(steps, st.data())
def test_every_write_that_reaches_the_stream_is_applied_once_on_every_replica(
        plan: list[tuple[int, str, int, int]], data: st.DataObject) -> None:
    stream: list[tuple[int, int]] = []  # (first seq, count) as stored, in stream order
    next_seq = 1
    for count, fate, back, again in plan:
        if fate != "lost":
            stream.append((next_seq, count))
        if fate == "resend" and next_seq > 1:
            first = max(1, next_seq - back)
            stream.append((first, min(again, next_seq - first)))
        next_seq += count
    primary = new_store()
    cut = data.draw(st.integers(0, len(stream)), label="snapshot after")
    snapshot: FlushBatch | None = None
    saved: tuple[Any, ...] = ({}, -1, {}, {})
    for offset, (first, count) in enumerate(stream):
        if offset == cut:
            snapshot = primary.take_flush()
            saved = (copy.deepcopy(primary.data), primary.applied_offset,
                     dict(primary.watermarks), copy.deepcopy(primary.gaps.ranges))
        primary.apply_batch(offset, "prod", first, appends(first, count))
    reached = {first + i for first, count in stream for i in range(count)}
    log = applied(primary)
    assert sorted(log) == sorted(reached), "every stored write once, none twice"
    if reached:
        assert primary.missing == len(set(range(1, max(reached) + 1)) - reached)
    # A replica that loads the snapshot (gaps included) and replays the rest agrees.
    replica = new_store()
    replica.load(*saved)
    for offset, (first, count) in enumerate(stream):
        replica.apply_batch(offset, "prod", first, appends(first, count))
    assert replica.data == primary.data and replica.gaps.ranges == primary.gaps.ranges
    assert snapshot is None or snapshot.offset == saved[1]
