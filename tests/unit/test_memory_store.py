"""liftline.store.memory.PartitionStore: the fold of one partition's stream, op by op."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest
from partition_stream import Stream, explode, keep_max, refuse, values

from liftline.store.memory import DeadLetter, PartitionStore

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


def test_incr_past_what_msgpack_carries_is_a_dead_letter(store: PartitionStore,
                                                          stream: Stream) -> None:
    """Found by schemathesis: two incr of 2**64 - 1 made a value no flush could pack,
    and the worker died on every flush after."""
    stream.send(["incr", "n", 2**64 - 1], ["incr", "m", -(2**63)])
    assert stream.send(["incr", "n", 1], ["incr", "m", -1]) == 0
    assert store.get("n") == (2**64 - 1, 1) and store.get("m") == (-(2**63), 1)
    assert [d.reason for d in store.dead] == ["incr overflows the 64-bit range"] * 2
    msgpack.packb([store.get("n"), store.get("m")])


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
    store.watermarks["prod"] = 99  # the batch follows the producer's earlier ones
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


# -- reducers ----------------------------------------------------------------

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


def test_dead_letter_defaults() -> None:
    dead = DeadLetter(1, 2, "why")
    assert (dead.index, dead.producer_id, dead.seq, dead.op, dead.key, dead.raw) == (
        -1, "", 0, "", "", b"")
    assert dead.at > 0
