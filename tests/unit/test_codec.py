"""liftline.codec: the wire format and the limits every write must meet."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from liftline import codec
from liftline.codec import (
    MAX_BATCH_BYTES,
    MAX_DEPTH,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    pack,
    pack_write,
    unpack,
    unpack_batch,
    write_fields,
)
from liftline.errors import InvalidMessage, InvalidWrite


def nested(levels: int, leaf: Any = 0) -> Any:
    """A value whose nesting depth is ``levels`` (a list inside a list …)."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def nested_dicts(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


def batch_body(obj: Any) -> bytes:
    """Any object encoded as msgpack, to stand in for a message body."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


# -- pack / unpack ---------------------------------------------------------

ROUND_TRIP_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.25,
    "",
    "text with é and 🙂",
    b"",
    b"\x00\xff binary",
    [],
    [1, "two", 3.0, None, b"4"],
    {},
    {"a": 1, "b": [1, 2, {"c": None}], "d": {"e": b"f"}},
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
def test_pack_unpack_round_trip(value: Any) -> None:
    assert unpack(pack(value)) == value


def test_bytes_and_str_stay_distinct() -> None:
    assert unpack(pack(b"abc")) == b"abc"
    assert unpack(pack("abc")) == "abc"
    assert type(unpack(pack(b"abc"))) is bytes
    assert type(unpack(pack("abc"))) is str


def test_tuples_come_back_as_lists() -> None:
    assert unpack(pack((1, (2, 3)))) == [1, [2, 3]]


def test_unpack_accepts_bytearray_and_memoryview() -> None:
    data = pack({"a": [1, 2]})
    assert unpack(bytearray(data)) == {"a": [1, 2]}
    assert unpack(memoryview(data)) == {"a": [1, 2]}


@pytest.mark.parametrize(
    "garbage",
    [
        b"",  # nothing at all
        b"\xc1",  # the one byte msgpack never uses
        b"\x92\x01",  # an array of 2 with only 1 item
        b"\x01\x02",  # two objects where one is expected
        b"\xa5abc",  # a str of 5 with 3 bytes
        b"\xa2\xff\xfe",  # a str that is not UTF-8
        msgpack.packb({1: "int keys are not allowed"}),
        b"\x91" * 100_000,  # nested far deeper than msgpack's stack
    ],
    ids=["empty", "never-used", "short-array", "extra-data", "short-str", "bad-utf8",
         "int-map-key", "deep"],
)
def test_unpack_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(InvalidMessage):
        unpack(garbage)


@pytest.mark.parametrize("not_bytes", ["a string", 12, None, [1, 2]])
def test_unpack_rejects_what_is_not_bytes(not_bytes: Any) -> None:
    with pytest.raises(InvalidMessage):
        unpack(not_bytes)


@pytest.mark.parametrize("code", [0, 5, 127])
def test_unpack_rejects_extension_types(code: int) -> None:
    data = msgpack.packb(["set", "k", msgpack.ExtType(code, b"payload")])
    with pytest.raises(InvalidMessage, match="extension type"):
        unpack(data)


TIMESTAMP = msgpack.Timestamp(1_700_000_000, 0)


@pytest.mark.parametrize(
    "value", [TIMESTAMP, [1, TIMESTAMP], {"at": TIMESTAMP}], ids=["bare", "in-list", "in-map"]
)
def test_a_batch_carrying_the_timestamp_extension_yields_no_valid_write(value: Any) -> None:
    # Type -1 is the one extension msgpack decodes itself (to msgpack.Timestamp)
    # without calling ext_hook; it must still never pass as a write's value,
    # whether the envelope or the write check refuses it.
    body = batch_body([1, "w", "p", 1, [["set", "k", value]]])
    try:
        _, _, writes = unpack_batch(body)
    except InvalidMessage:
        return
    with pytest.raises(InvalidWrite):
        write_fields(writes[0])


def test_pack_write_refuses_a_timestamp_value() -> None:
    with pytest.raises(InvalidWrite):
        pack_write("set", "k", {"at": TIMESTAMP})


def test_unpack_rejects_oversize_input_before_decoding() -> None:
    # Valid msgpack one byte over the limit: refused for its size alone.
    data = pack(b"x" * (MAX_BATCH_BYTES - 5 + 1))
    assert len(data) == MAX_BATCH_BYTES + 1
    with pytest.raises(InvalidMessage, match="limit"):
        unpack(data)
    at_limit = pack(b"x" * (MAX_BATCH_BYTES - 5))
    assert len(at_limit) == MAX_BATCH_BYTES
    assert unpack(at_limit) == b"x" * (MAX_BATCH_BYTES - 5)


def test_unpack_honours_a_smaller_max_bytes() -> None:
    data = pack("x" * 100)
    with pytest.raises(InvalidMessage):
        unpack(data, max_bytes=50)
    assert unpack(data, max_bytes=len(data)) == "x" * 100


@pytest.mark.parametrize("value", [object(), {1, 2}, 2**64, -(2**63) - 1, "\ud800"],
                         ids=["object", "set", "too-big-int", "too-small-int", "lone-surrogate"])
def test_pack_refuses_what_msgpack_cannot_carry(value: Any) -> None:
    with pytest.raises(InvalidWrite):
        pack(value)


# -- depth -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), ("s", 0), (None, 0), ([], 1), ({}, 1), ([1, 2], 1), ([[1], 2], 2),
     ({"a": {"b": [1]}}, 3), (nested(32), 32), (nested_dicts(10), 10)],
)
def test_depth(value: Any, expected: int) -> None:
    assert codec.depth(value) == expected


def test_depth_stops_counting_past_the_limit() -> None:
    assert codec.depth(nested(10_000), limit=5) == 6


# -- pack_write: keys ------------------------------------------------------

@pytest.mark.parametrize(
    "key",
    ["k", "x" * MAX_KEY_BYTES, "é" * 200, "é" * 256, "€" * 170, "🙂" * 128, "user:42/🙂"],
    ids=["one-char", "512-ascii", "200-e-acute(400B)", "256-e-acute(512B)",
         "170-euro(510B)", "128-emoji(512B)", "mixed"],
)
def test_keys_within_512_utf8_bytes_are_accepted(key: str) -> None:
    assert len(key.encode("utf-8")) <= MAX_KEY_BYTES
    assert unpack(pack_write("set", key, 1)) == ["set", key, 1]


@pytest.mark.parametrize(
    "key",
    ["x" * (MAX_KEY_BYTES + 1), "é" * 300, "é" * 257, "€" * 171, "🙂" * 129],
    ids=["513-ascii", "300-e-acute(600B)", "257-e-acute(514B)", "171-euro(513B)",
         "129-emoji(516B)"],
)
def test_keys_over_512_utf8_bytes_are_refused(key: str) -> None:
    assert len(key.encode("utf-8")) > MAX_KEY_BYTES
    with pytest.raises(InvalidWrite, match="512"):
        pack_write("set", key, 1)


@pytest.mark.parametrize("key", ["", None, 1, b"bytes-key", ["k"]],
                         ids=["empty", "none", "int", "bytes", "list"])
def test_empty_or_non_str_keys_are_refused(key: Any) -> None:
    with pytest.raises(InvalidWrite):
        pack_write("set", key, 1)


# -- pack_write: value size and nesting -------------------------------------

def bin_packing_to(size: int) -> bytes:
    """Bytes that msgpack encodes in exactly ``size`` bytes (bin16: 3-byte header)."""
    value = b"v" * (size - 3)
    assert len(pack(value)) == size
    return value


def test_value_of_exactly_64_kib_packed_is_accepted() -> None:
    value = bin_packing_to(MAX_VALUE_BYTES)
    assert len(pack(value)) == MAX_VALUE_BYTES
    assert unpack(pack_write("set", "k", value)) == ["set", "k", value]


def test_value_of_64_kib_with_the_longest_key_is_accepted() -> None:
    value = bin_packing_to(MAX_VALUE_BYTES)
    key = "k" * MAX_KEY_BYTES
    assert unpack(pack_write("set", key, value))[1] == key


def test_value_far_over_64_kib_is_refused() -> None:
    with pytest.raises(InvalidWrite, match="limit"):
        pack_write("set", "k", b"v" * (2 * MAX_VALUE_BYTES))


@pytest.mark.parametrize("key", ["k", "k" * MAX_KEY_BYTES], ids=["short-key", "longest-key"])
def test_value_one_byte_over_64_kib_packed_is_refused(key: str) -> None:
    value = bin_packing_to(MAX_VALUE_BYTES + 1)
    with pytest.raises(InvalidWrite):
        pack_write("set", key, value)


def test_large_structured_value_over_64_kib_is_refused() -> None:
    value = {f"field{i}": "x" * 100 for i in range(1000)}  # ~110 KB packed
    with pytest.raises(InvalidWrite):
        pack_write("merge", "k", value)


@pytest.mark.parametrize("make", [nested, nested_dicts], ids=["lists", "dicts"])
def test_nesting_of_exactly_32_is_accepted(make: Any) -> None:
    value = make(MAX_DEPTH)
    assert unpack(pack_write("set", "k", value)) == ["set", "k", value]


@pytest.mark.parametrize("make", [nested, nested_dicts], ids=["lists", "dicts"])
def test_nesting_of_33_is_refused(make: Any) -> None:
    with pytest.raises(InvalidWrite, match="nested"):
        pack_write("set", "k", make(MAX_DEPTH + 1))


def test_very_deep_nesting_is_refused_quickly() -> None:
    with pytest.raises(InvalidWrite, match="nested"):
        pack_write("set", "k", nested(50_000))


# -- pack_write: ops and their arguments ------------------------------------

@pytest.mark.parametrize(
    ("op", "value", "arg"),
    [
        ("set", {"any": "thing"}, None),
        ("set", None, None),
        ("delete", None, None),
        ("incr", 1, None),
        ("incr", -2.5, None),
        ("incr", 0, None),
        ("merge", {}, None),
        ("merge", {"a": 1}, None),
        ("append", "item", None),
        ("append", "item", 1),
        ("append", "item", 10_000),
        ("setnx", 3, None),
        ("cas", "new", 0),
        ("cas", "new", 7),
        ("my_reducer", [1, 2], None),
        ("x" * 64, 1, None),
    ],
)
def test_well_formed_writes_are_accepted(op: str, value: Any, arg: Any) -> None:
    expected = [op, "k", value] if arg is None else [op, "k", value, arg]
    assert unpack(pack_write(op, "k", value, arg)) == expected


@pytest.mark.parametrize(
    ("op", "value", "arg"),
    [
        ("incr", True, None),
        ("incr", False, None),
        ("incr", "1", None),
        ("incr", None, None),
        ("incr", [1], None),
        ("merge", [("a", 1)], None),
        ("merge", "a=1", None),
        ("merge", None, None),
        ("cas", "v", None),
        ("cas", "v", -1),
        ("cas", "v", True),
        ("cas", "v", 1.0),
        ("cas", "v", "1"),
        ("append", "v", 0),
        ("append", "v", -5),
        ("append", "v", True),
        ("append", "v", 2.0),
        ("append", "v", "3"),
        ("", 1, None),
        ("x" * 65, 1, None),
        (None, 1, None),
        (7, 1, None),
    ],
)
def test_malformed_writes_are_refused(op: Any, value: Any, arg: Any) -> None:
    with pytest.raises(InvalidWrite):
        pack_write(op, "k", value, arg)


def test_unencodable_value_is_refused() -> None:
    with pytest.raises(InvalidWrite):
        pack_write("set", "k", object())


# -- write_fields ----------------------------------------------------------

def test_write_fields_of_decoded_writes() -> None:
    assert write_fields(["set", "k", 1]) == ("set", "k", 1, None)
    assert write_fields(["cas", "k", "v", 3]) == ("cas", "k", "v", 3)


@pytest.mark.parametrize(
    "write",
    [["set", "k"], ["set", "k", 1, None, 2], "set k 1", ("set", "k", 1), None,
     ["set", "", 1], ["incr", "k", "one"], ["cas", "k", 1, -1]],
)
def test_write_fields_refuses_malformed_writes(write: Any) -> None:
    with pytest.raises(InvalidWrite):
        write_fields(write)
