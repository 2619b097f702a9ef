"""liftline.store.memory.PartitionStore: the fold of one partition's stream."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftline.errors import InvalidWrite
from liftline.store.memory import DeadLetter, FlushBatch, PartitionStore


class Stream:
    """Feeds batches to a store at increasing stream offsets, as a worker would."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.offset = -1
        self.next_seq: dict[str, int] = {}

    def send(self, *writes: Any, producer: str = "p") -> int:
        """One new batch from ``producer`` with the next sequence numbers."""
        first_seq = self.next_seq.get(producer, 1)
        self.next_seq[producer] = first_seq + len(writes)
        return self.at(first_seq, *writes, producer=producer)

    def at(self, first_seq: int, *writes: Any, producer: str = "p") -> int:
        """A batch with an explicit first_seq (a republish) at the next offset."""
        self.offset += 1
        return self.store.apply_batch(self.offset, producer, first_seq, copy.deepcopy(list(writes)))


@pytest.fixture
def store() -> PartitionStore:
    return PartitionStore(3)


@pytest.fixture
def stream(store: PartitionStore) -> Stream:
    return Stream(store)


def values(store: PartitionStore) -> dict[str, Any]:
    return {key: entry[0] for key, entry in store.data.items()}


# -- set / delete ------------------------------------------------------------

def test_set_creates_then_overwrites_and_counts_versions(store: PartitionStore,
                                                        stream: Stream) -> None:
    assert store.get("k") is None
    assert stream.send(["set", "k", {"a": 1}]) == 1
    assert store.get("k") == ({"a": 1}, 1)
    assert stream.send(["set", "k", "two"], ["set", "k", None]) == 2
    assert store.get("k") == (None, 3)


def test_delete_removes_the_key_and_resets_its_version(store: PartitionStore,
                                                      stream: Stream) -> None:
    stream.send(["set", "k", 1], ["set", "k", 2])
    assert store.get("k") == (2, 2)
    assert stream.send(["delete", "k", None]) == 1
    assert store.get("k") is None
    stream.send(["set", "k", 3])
    assert store.get("k") == (3, 1)


def test_delete_of_an_absent_key_changes_nothing(store: PartitionStore, stream: Stream) -> None:
    assert stream.send(["delete", "nope", None]) == 0
    assert store.data == {}
    assert store.dirty == {}
    assert store.dead == []


# -- incr ----------------------------------------------------------------------

def test_incr_starts_at_the_amount_and_adds(store: PartitionStore, stream: Stream) -> None:
    stream.send(["incr", "n", 5])
    assert store.get("n") == (5, 1)
    stream.send(["incr", "n", -2], ["incr", "n", 10])
    assert store.get("n") == (13, 3)
    assert type(store.get("n")[0]) is int  # type: ignore[index]


def test_incr_by_a_float(store: PartitionStore, stream: Stream) -> None:
    stream.send(["incr", "n", 1], ["incr", "n", 0.5])
    assert store.get("n") == (1.5, 2)
    stream.send(["incr", "f", 0.25])
    assert store.get("f") == (0.25, 1)


@pytest.mark.parametrize("amount", [True, "1", None, [1], {"n": 1}])
def test_incr_by_a_non_number_is_a_dead_letter(store: PartitionStore, stream: Stream,
                                               amount: Any) -> None:
    stream.send(["incr", "n", 1])
    assert stream.send(["incr", "n", amount]) == 0
    assert store.get("n") == (1, 1)
    assert len(store.dead) == 1
    assert "incr" in store.dead[0].reason


def test_incr_of_a_non_number_value_is_a_dead_letter(store: PartitionStore,
                                                     stream: Stream) -> None:
    stream.send(["set", "s", "text"])
    assert stream.send(["incr", "s", 1]) == 0
    assert store.get("s") == ("text", 1)
    assert [d.reason for d in store.dead] == ["incr on a str value"]


# -- merge -------------------------------------------------------------------

def test_merge_creates_then_updates_a_dict(store: PartitionStore, stream: Stream) -> None:
    stream.send(["merge", "d", {"a": 1, "b": 2}])
    assert store.get("d") == ({"a": 1, "b": 2}, 1)
    stream.send(["merge", "d", {"b": 3, "c": {"x": None}}])
    assert store.get("d") == ({"a": 1, "b": 3, "c": {"x": None}}, 2)
    stream.send(["merge", "d", {}])
    assert store.get("d") == ({"a": 1, "b": 3, "c": {"x": None}}, 3)


def test_merge_does_not_keep_a_reference_to_the_write(store: PartitionStore) -> None:
    writes = [["merge", "d", {"a": 1}], ["merge", "d", {"b": 2}]]
    store.apply_batch(0, "p", 1, writes)
    assert writes[0][2] == {"a": 1}


def test_merge_into_a_non_dict_or_of_a_non_dict_is_a_dead_letter(store: PartitionStore,
                                                                 stream: Stream) -> None:
    stream.send(["set", "list", [1]], ["merge", "list", {"a": 1}], ["merge", "new", [("a", 1)]])
    assert store.get("list") == ([1], 1)
    assert store.get("new") is None
    assert [(d.index, d.key) for d in store.dead] == [(1, "list"), (2, "new")]


# -- append ------------------------------------------------------------------

def test_append_builds_a_list(store: PartitionStore, stream: Stream) -> None:
    stream.send(["append", "l", "a"], ["append", "l", {"b": 1}], ["append", "l", None])
    assert store.get("l") == (["a", {"b": 1}, None], 3)


def test_append_with_a_cap_keeps_the_newest_items(store: PartitionStore,
                                                  stream: Stream) -> None:
    stream.send(*[["append", "l", i, 3] for i in range(10)])
    assert store.get("l") == ([7, 8, 9], 10)
    stream.send(["append", "l", 10, 1])
    assert store.get("l") == ([10], 11)


def test_append_without_a_cap_uses_the_store_default() -> None:
    store = PartitionStore(0, append_cap=4)
    Stream(store).send(*[["append", "l", i] for i in range(9)])
    assert store.get("l") == ([5, 6, 7, 8], 9)


def test_the_default_append_cap_is_1000(store: PartitionStore, stream: Stream) -> None:
    stream.send(*[["append", "l", i] for i in range(1001)])
    items, version = store.get("l")  # type: ignore[misc]
    assert version == 1001
    assert items == list(range(1, 1001))


@pytest.mark.parametrize("cap", [0, -1, True, 2.0, "3"])
def test_append_with_a_bad_cap_is_a_dead_letter(store: PartitionStore, stream: Stream,
                                                cap: Any) -> None:
    assert stream.send(["append", "l", 1, cap]) == 0
    assert store.get("l") is None
    assert "cap" in store.dead[0].reason


def test_append_to_a_non_list_is_a_dead_letter(store: PartitionStore, stream: Stream) -> None:
    stream.send(["set", "s", "text"], ["append", "s", "x"])
    assert store.get("s") == ("text", 1)
    assert store.dead[0].reason == "append on a str value"


# -- setnx / cas -------------------------------------------------------------

def test_setnx_sets_only_an_absent_key(store: PartitionStore, stream: Stream) -> None:
    assert stream.send(["setnx", "k", "first"]) == 1
    assert stream.send(["setnx", "k", "second"]) == 0
    assert store.get("k") == ("first", 1)
    assert store.dead == []


def test_setnx_after_delete_sets_again(store: PartitionStore, stream: Stream) -> None:
    stream.send(["setnx", "k", 1], ["delete", "k", None], ["setnx", "k", 2])
    assert store.get("k") == (2, 1)


def test_cas_with_version_0_creates_an_absent_key(store: PartitionStore,
                                                  stream: Stream) -> None:
    assert stream.send(["cas", "k", "v", 0]) == 1
    assert store.get("k") == ("v", 1)
    assert stream.send(["cas", "k", "again", 0]) == 0
    assert store.get("k") == ("v", 1)


def test_cas_on_an_absent_key_with_a_version_is_a_no_op(store: PartitionStore,
                                                        stream: Stream) -> None:
    assert stream.send(["cas", "k", "v", 1]) == 0
    assert store.get("k") is None
    assert store.dead == []
    assert store.dirty == {}


def test_cas_with_the_current_version_replaces(store: PartitionStore, stream: Stream) -> None:
    stream.send(["set", "k", "a"], ["set", "k", "b"])
    assert stream.send(["cas", "k", "c", 2]) == 1
    assert store.get("k") == ("c", 3)


@pytest.mark.parametrize("version", [1, 3, 99])
def test_cas_with_another_version_leaves_the_value(store: PartitionStore, stream: Stream,
                                                   version: int) -> None:
    stream.send(["set", "k", "a"], ["set", "k", "b"])
    assert stream.send(["cas", "k", "c", version]) == 0
    assert store.get("k") == ("b", 2)
    assert store.dead == []


def test_cas_after_delete_compares_against_0(store: PartitionStore, stream: Stream) -> None:
    stream.send(["set", "k", "a"], ["delete", "k", None])
    assert stream.send(["cas", "k", "stale", 1]) == 0
    assert stream.send(["cas", "k", "fresh", 0]) == 1
    assert store.get("k") == ("fresh", 1)


@pytest.mark.parametrize("version", [None, -1, True, 1.0, "1"])
def test_cas_with_a_bad_version_is_a_dead_letter(store: PartitionStore, stream: Stream,
                                                 version: Any) -> None:
    write = ["cas", "k", "v"] if version is None else ["cas", "k", "v", version]
    assert stream.send(write) == 0
    assert store.get("k") is None
    assert "cas" in store.dead[0].reason


# -- invalid writes ----------------------------------------------------------

def test_invalid_writes_become_dead_letters_and_the_rest_applies(store: PartitionStore) -> None:
    deep: Any = 0
    for _ in range(33):
        deep = [deep]
    writes: list[Any] = [
        ["set", "a", 1],  # 0 ok
        ["incr", "b", "x"],  # 1 bad amount
        ["set"],  # 2 too short
        "not a list",  # 3 not a write
        ["set", "", 1],  # 4 empty key
        ["set", "k" * 513, 1],  # 5 key too long
        ["frobnicate", "c", 1],  # 6 unknown op
        ["set", "d", deep],  # 7 nested too deep
        ["set", "e", 1, None, "extra"],  # 8 too long
        ["set", 5, 1],  # 9 key not a str
        ["set", "z", 26],  # 10 ok
    ]
    assert store.apply_batch(7, "prod", 100, writes) == 2
    assert values(store) == {"a": 1, "z": 26}
    assert [d.index for d in store.dead] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [d.seq for d in store.dead] == [101, 102, 103, 104, 105, 106, 107, 108, 109]
    assert {d.partition for d in store.dead} == {3}
    assert {d.offset for d in store.dead} == {7}
    assert {d.producer_id for d in store.dead} == {"prod"}
    assert all(d.reason for d in store.dead)
    first = store.dead[0]
    assert (first.op, first.key) == ("incr", "b")
    assert "unknown op" in store.dead[5].reason
    assert "nested" in store.dead[6].reason
    # Invalid writes were still consumed: a republish does not dead-letter them again.
    assert store.applied("prod", 110)
    assert store.apply_batch(8, "prod", 100, copy.deepcopy(writes)) == 0
    assert len(store.dead) == 9


def test_keys_of_512_utf8_bytes_apply_and_longer_ones_do_not(store: PartitionStore,
                                                             stream: Stream) -> None:
    stream.send(["set", "é" * 200, 1], ["set", "é" * 256, 2], ["set", "é" * 257, 3],
                ["set", "é" * 300, 4])
    assert values(store) == {"é" * 200: 1, "é" * 256: 2}
    assert [d.index for d in store.dead] == [2, 3]


def test_set_nested_exactly_32_deep_applies(store: PartitionStore, stream: Stream) -> None:
    value: Any = "leaf"
    for _ in range(32):
        value = {"k": value}
    assert stream.send(["set", "k", value], ["merge", "m", {"k": value["k"]}]) == 2
    assert store.get("k") == (value, 1)


@pytest.mark.parametrize(
    "write",
    [["set", "k", msgpack.Timestamp(1, 0)], ["set", "k", [msgpack.Timestamp(1, 0)]],
     ["merge", "k", {"at": msgpack.Timestamp(1, 0)}], ["append", "k", msgpack.Timestamp(1, 0)],
     ["setnx", "k", msgpack.Timestamp(1, 0)], ["cas", "k", msgpack.Timestamp(1, 0), 0]],
    ids=["set", "set-in-list", "merge", "append", "setnx", "cas"],
)
def test_timestamp_extension_values_are_dead_letters(store: PartitionStore,
                                                     write: list[Any]) -> None:
    # msgpack decodes its timestamp extension without ext_hook; such a value
    # must not get into the state (readers and JSON output cannot carry it).
    assert store.apply_batch(0, "p", 1, [write, ["set", "ok", 1]]) == 1
    assert values(store) == {"ok": 1}
    assert [d.index for d in store.dead] == [0]


def test_dead_letter_for_an_undecodable_message(store: PartitionStore) -> None:
    store.dead_letter(12, "not valid msgpack", raw=b"\xc1" * 300)
    [dead] = store.dead
    assert (dead.partition, dead.offset, dead.index) == (3, 12, -1)
    assert dead.reason == "not valid msgpack"
    record = dead.to_dict()
    assert record["raw"] == b"\xc1" * 256
    assert record["offset"] == 12


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
    assert dict(batch.changed) == {"a": [1, 1], "b": [2, 1]}
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
    assert dict(batch.changed) == {"b": [3, 2]}
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
    assert dict(retry.changed) == {"b": [2, 1]}
    assert retry.deleted == ["gone"]
    assert [d.key for d in retry.dead] == ["y"]
    assert retry.offset == 2

    stream.send(["set", "c", 3], ["incr", "z", "bad"])
    failed = store.take_flush()
    stream.send(["set", "c", 4], ["incr", "w", "bad"])
    store.restore_unflushed(failed)
    retry = store.take_flush()
    assert dict(retry.changed) == {"c": [4, 2]}
    # Dead letters keep their order: the failed flush's first.
    assert [d.key for d in retry.dead] == ["z", "w"]
    assert retry.watermarks == {"p": 10}


def test_load_replaces_state_and_keeps_skipping_duplicates(store: PartitionStore) -> None:
    store.apply_batch(0, "old", 1, [["set", "stale", 1]])
    store.load({"k": [10, 4]}, offset=41, watermarks={"p": 7})
    assert store.data == {"k": [10, 4]}
    assert store.applied_offset == 41
    assert store.dirty == {}
    assert store.take_flush().empty
    assert store.apply_batch(42, "p", 6, [["incr", "k", 1], ["incr", "k", 1],
                                          ["incr", "k", 1]]) == 1
    assert store.get("k") == (11, 5)


# -- reducers ----------------------------------------------------------------

def keep_max(current: Any, value: Any) -> Any:
    return value if current is None else max(current, value)


def explode(current: Any, value: Any) -> Any:
    raise ZeroDivisionError("reducer bug")


def refuse(current: Any, value: Any) -> Any:
    raise InvalidWrite("value not allowed")


def test_a_custom_reducer_folds_values() -> None:
    store = PartitionStore(0, reducers={"max": keep_max})
    Stream(store).send(["max", "m", 3], ["max", "m", 1], ["max", "m", 9], ["max", "m", 4])
    assert store.get("m") == (9, 4)


def test_a_reducer_that_raises_makes_a_dead_letter_and_the_batch_goes_on() -> None:
    store = PartitionStore(0, reducers={"boom": explode, "strict": refuse, "max": keep_max})
    stream = Stream(store)
    stream.send(["max", "m", 1])
    applied = stream.send(["boom", "m", 5], ["strict", "m", 6], ["max", "m", 7])
    assert applied == 1
    assert store.get("m") == (7, 2)
    assert [(d.index, d.op) for d in store.dead] == [(0, "boom"), (1, "strict")]
    assert "ZeroDivisionError" in store.dead[0].reason
    assert "reducer bug" in store.dead[0].reason
    assert store.dead[1].reason == "value not allowed"


def test_built_in_ops_win_over_reducers_of_the_same_name() -> None:
    store = PartitionStore(0, reducers={"set": explode})
    Stream(store).send(["set", "k", 1])
    assert store.get("k") == (1, 1)
    assert store.dead == []


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
    return (store.data, store.watermarks, len(store.dead))


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
    assert restarted.data == once.data
    assert restarted.watermarks == once.watermarks


def test_dead_letter_defaults() -> None:
    dead = DeadLetter(1, 2, "why")
    assert (dead.index, dead.producer_id, dead.seq, dead.op, dead.key, dead.raw) == (
        -1, "", 0, "", "", b"")
    assert dead.at > 0
