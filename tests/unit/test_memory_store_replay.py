"""PartitionStore: duplicates, offsets, flushing and restarts give the fold of the stream once."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from partition_stream import Stream, decoded, explode, keep_max

from liftline.store.memory import FlushBatch, PartitionStore

# -- duplicates and offsets --------------------------------------------------

def test_a_republished_batch_is_skipped(store: PartitionStore, stream: Stream) -> None:
    stream.at(1, ["incr", "n", 1], ["incr", "n", 2])
    assert stream.at(1, ["incr", "n", 1], ["incr", "n", 2]) == 0
    assert store.get("n") == (3, 2)
    assert store.skipped_duplicates == 2
    assert store.applied_writes == 2


def test_partial_overlap_applies_only_the_new_tail(store: PartitionStore,
                                                   stream: Stream) -> None:
    stream.at(1, ["incr", "n", 1], ["incr", "n", 2], ["incr", "n", 4])
    # Republished from seq 2 with two writes the store has not seen.
    assert stream.at(2, ["incr", "n", 2], ["incr", "n", 4], ["incr", "n", 8],
                     ["incr", "n", 16]) == 2
    assert store.get("n") == (31, 5)
    assert store.skipped_duplicates == 2
    assert store.watermarks == {"p": 5}


def test_a_batch_at_or_below_the_applied_offset_is_ignored(store: PartitionStore) -> None:
    assert store.apply_batch(5, "p", 1, [["set", "k", 1]]) == 1
    assert store.apply_batch(5, "q", 1, [["set", "k", 2]]) == 0
    assert store.apply_batch(3, "q", 1, [["set", "k", 3]]) == 0
    assert store.get("k") == (1, 1)
    assert store.applied_offset == 5
    assert not store.applied("q", 1)
    assert store.apply_batch(6, "q", 1, [["set", "k", 4]]) == 1
    assert store.get("k") == (4, 2)


def test_producers_have_independent_sequences(store: PartitionStore, stream: Stream) -> None:
    stream.send(["incr", "n", 1], producer="a")
    stream.send(["incr", "n", 10], producer="b")
    stream.send(["incr", "n", 100], producer="a")
    assert store.get("n") == (111, 3)
    assert store.watermarks == {"a": 2, "b": 1}


def test_applied_reports_what_the_state_reflects(store: PartitionStore, stream: Stream) -> None:
    assert not store.applied("p", 1)
    stream.send(["set", "a", 1], ["set", "b", 2], ["set", "c", 3])
    assert store.applied("p", 1)
    assert store.applied("p", 3)
    assert not store.applied("p", 4)
    assert not store.applied("other", 1)


def test_an_empty_batch_changes_nothing(store: PartitionStore) -> None:
    assert store.apply_batch(0, "p", 1, []) == 0
    assert store.data == {}
    assert not store.applied("p", 1)


# -- dirty tracking and flushing --------------------------------------------

def test_take_flush_returns_what_changed_and_resets(store: PartitionStore,
                                                    stream: Stream) -> None:
    stream.send(["set", "a", 1], ["set", "b", 2], ["incr", "c", "bad"])
    batch = store.take_flush()
    assert batch.partition == 3
    assert batch.offset == 0
    assert decoded(batch.changed) == {"a": [1, 1], "b": [2, 1]}
    assert batch.deleted == []
    assert batch.watermarks == {"p": 3}
    assert [d.index for d in batch.dead] == [2]
    assert not batch.empty
    assert store.dirty == {}
    assert store.dead == []
    assert store.pending_writes == 0
    again = store.take_flush()
    assert again.empty
    assert again.offset == 0


def test_take_flush_lists_deleted_keys(store: PartitionStore, stream: Stream) -> None:
    stream.send(["set", "a", 1], ["set", "b", 2])
    store.take_flush()
    stream.send(["delete", "a", None], ["set", "b", 3])
    batch = store.take_flush()
    assert batch.deleted == ["a"]
    assert decoded(batch.changed) == {"b": [3, 2]}
    assert batch.offset == 1


def test_a_key_set_and_deleted_between_flushes_is_flushed_as_deleted(
    store: PartitionStore, stream: Stream
) -> None:
    stream.send(["set", "tmp", 1], ["delete", "tmp", None])
    batch = store.take_flush()
    assert batch.changed == []
    assert batch.deleted == ["tmp"]


def test_no_ops_are_not_dirty(store: PartitionStore, stream: Stream) -> None:
    stream.send(["set", "k", 1])
    store.take_flush()
    stream.send(["setnx", "k", 2], ["cas", "k", 3, 9], ["delete", "absent", None])
    batch = store.take_flush()
    assert batch.changed == [] and batch.deleted == [] and batch.dead == []
    assert batch.offset == 1
    assert batch.watermarks == {"p": 4}


def test_restore_unflushed_makes_the_next_flush_retry(store: PartitionStore,
                                                      stream: Stream) -> None:
    stream.send(["set", "a", 1], ["set", "gone", 1], ["incr", "x", "bad"])
    store.take_flush()
    stream.send(["delete", "gone", None])
    failed = store.take_flush()
    stream.send(["set", "b", 2], ["incr", "y", "bad"])
    store.restore_unflushed(failed)
    # Nothing from the failed flush was lost, and later changes come along.
    retry = store.take_flush()
    assert decoded(retry.changed) == {"b": [2, 1]}
    assert retry.deleted == ["gone"]
    assert [d.key for d in retry.dead] == ["y"]
    assert retry.offset == 2

    stream.send(["set", "c", 3], ["incr", "z", "bad"])
    failed = store.take_flush()
    stream.send(["set", "c", 4], ["incr", "w", "bad"])
    store.restore_unflushed(failed)
    retry = store.take_flush()
    assert decoded(retry.changed) == {"c": [4, 2]}
    # Dead letters keep their order: the failed flush's first.
    assert [d.key for d in retry.dead] == ["z", "w"]
    assert retry.watermarks == {"p": 10}


def test_load_replaces_state_and_keeps_skipping_duplicates(store: PartitionStore) -> None:
    store.apply_batch(0, "old", 1, [["set", "stale", 1]])
    store.load({"k": [10, 4]}, offset=41, watermarks={"p": 7})
    assert decoded(store.data) == {"k": [10, 4]}
    assert store.applied_offset == 41
    assert store.dirty == {}
    assert store.take_flush().empty
    assert store.apply_batch(42, "p", 6, [["incr", "k", 1], ["incr", "k", 1],
                                          ["incr", "k", 1]]) == 1
    assert store.get("k") == (11, 5)


# -- property: a republish changes nothing ----------------------------------

KEY = st.sampled_from(["k0", "k1", "k2", "k3"])
SMALL = st.integers(min_value=-5, max_value=5)
WRITE = st.one_of(
    st.tuples(st.just("set"), KEY, SMALL | st.lists(SMALL, max_size=2)),
    st.tuples(st.just("delete"), KEY, st.none()),
    st.tuples(st.just("incr"), KEY, SMALL),
    st.tuples(st.just("merge"), KEY, st.dictionaries(st.sampled_from("abc"), SMALL, max_size=2)),
    st.tuples(st.just("append"), KEY, SMALL, st.integers(min_value=1, max_value=3)),
    st.tuples(st.just("setnx"), KEY, SMALL),
    st.tuples(st.just("cas"), KEY, SMALL, st.integers(min_value=0, max_value=3)),
    st.tuples(st.just("max"), KEY, SMALL),
    st.tuples(st.just("boom"), KEY, SMALL),
).map(list)
BATCHES = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(WRITE, min_size=1, max_size=6)),
    max_size=12,
)


def sequenced(batches: list[tuple[str, list[Any]]]) -> list[tuple[str, int, list[Any]]]:
    """(producer, first_seq, writes) with each producer's seqs counting from 1."""
    next_seq: dict[str, int] = {}
    out = []
    for producer, writes in batches:
        first = next_seq.get(producer, 1)
        next_seq[producer] = first + len(writes)
        out.append((producer, first, writes))
    return out


def fold(batches: list[tuple[str, int, list[Any]]], store: PartitionStore | None = None,
         first_offset: int = 0) -> PartitionStore:
    store = store or PartitionStore(0, reducers={"max": keep_max, "boom": explode})
    for i, (producer, first_seq, writes) in enumerate(batches):
        # Each apply sees fresh objects, as a worker decoding the message would.
        store.apply_batch(first_offset + i, producer, first_seq, copy.deepcopy(writes))
    return store


def state(store: PartitionStore) -> tuple[Any, ...]:
    return (decoded(store.data), store.watermarks, len(store.dead))


@settings(max_examples=120, deadline=None)
@given(batches=BATCHES, data=st.data())
def test_republishing_any_prefix_gives_the_same_state(
    batches: list[tuple[str, list[Any]]], data: st.DataObject
) -> None:
    sent = sequenced(batches)
    once = fold(sent)
    prefix = data.draw(st.integers(min_value=0, max_value=len(sent)), label="prefix")
    twice = fold(sent)
    fold(sent[:prefix], store=twice, first_offset=len(sent))
    assert state(twice) == state(once)


@settings(max_examples=200, deadline=None)
@given(writes=st.lists(WRITE, min_size=1, max_size=20), data=st.data())
def test_overlapping_resends_apply_each_write_once(
    writes: list[Any], data: st.DataObject
) -> None:
    # One producer resends ranges of its writes cut differently each time; as
    # long as no range skips ahead of what was sent, every write counts once.
    once = fold([("p", 1, writes)])
    chunked: list[tuple[str, int, list[Any]]] = []
    sent = 0
    while sent < len(writes):
        start = data.draw(st.integers(min_value=1, max_value=sent + 1), label="start")
        end = data.draw(st.integers(min_value=start, max_value=len(writes)), label="end")
        chunked.append(("p", start, writes[start - 1:end]))
        sent = max(sent, end)
    assert state(fold(chunked)) == state(once)


@settings(max_examples=60, deadline=None)
@given(batches=BATCHES, data=st.data())
def test_restart_from_a_flushed_snapshot_then_replay_gives_the_same_state(
    batches: list[tuple[str, list[Any]]], data: st.DataObject
) -> None:
    sent = sequenced(batches)
    once = fold(sent)
    cut = data.draw(st.integers(min_value=0, max_value=len(sent)), label="cut")
    before = fold(sent[:cut])
    snapshot: FlushBatch = before.take_flush()
    restarted = PartitionStore(0, reducers={"max": keep_max, "boom": explode})
    restarted.load(copy.deepcopy(before.data), snapshot.offset, snapshot.watermarks)
    # The stream is replayed from the start; offsets already flushed are ignored.
    fold(sent, store=restarted)
    assert decoded(restarted.data) == decoded(once.data)
    assert restarted.watermarks == once.watermarks
