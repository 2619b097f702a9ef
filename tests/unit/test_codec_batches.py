"""liftline.codec: batches on the wire, their limits, and a round-trip property."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codec import batch_body

from liftline.codec import (
    MAX_BATCH_BYTES,
    pack_batch,
    pack_write,
    unpack_batch,
    write_fields,
)
from liftline.errors import ConfigError, InvalidMessage
from liftline.settings import Settings

# -- batches ---------------------------------------------------------------

def tiny_writes(count: int) -> list[bytes]:
    return [pack_write("incr", f"k{i % 97}", i) for i in range(count)]


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536],
                         ids=lambda n: f"{n}-writes")
def test_batch_round_trip_across_array_header_sizes(count: int) -> None:
    packed = tiny_writes(count)
    body = pack_batch("producer-1", 42, packed)
    producer_id, first_seq, writes = unpack_batch(body)
    assert producer_id == "producer-1"
    assert first_seq == 42
    assert len(writes) == count
    assert writes == [["incr", f"k{i % 97}", i] for i in range(count)]
    # The hand-assembled envelope is exactly what msgpack itself would produce.
    assert body == msgpack.packb([1, "w", "producer-1", 42, writes], use_bin_type=True)


def test_batch_keeps_mixed_writes_in_order() -> None:
    sent = [
        ["set", "a", {"x": [1, 2]}],
        ["delete", "b", None],
        ["append", "c", b"\x00", 5],
        ["cas", "d", "new", 0],
        ["merge", "é" * 200, {"n": None}],
    ]
    body = pack_batch("p", 1, [pack_write(*w) for w in sent])
    _, _, writes = unpack_batch(body)
    assert writes == sent
    assert [write_fields(w) for w in writes] == [
        ("set", "a", {"x": [1, 2]}, None),
        ("delete", "b", None, None),
        ("append", "c", b"\x00", 5),
        ("cas", "d", "new", 0),
        ("merge", "é" * 200, {"n": None}, None),
    ]


@pytest.mark.parametrize("first_seq", [1, 2**31, 2**63 - 1])
def test_batch_round_trip_of_large_sequence_numbers(first_seq: int) -> None:
    _, seq, _ = unpack_batch(pack_batch("p", first_seq, tiny_writes(3)))
    assert seq == first_seq


@pytest.mark.parametrize(
    "obj",
    [
        [2, "w", "p", 1, []],  # wrong version
        [0, "w", "p", 1, []],
        ["1", "w", "p", 1, []],
        [1, "r", "p", 1, []],  # wrong kind
        [1, b"w", "p", 1, []],
        [1, "w", "", 1, []],  # producer: empty, too long, not a str
        [1, "w", "p" * 65, 1, []],
        [1, "w", 7, 1, []],
        [1, "w", b"p", 1, []],
        [1, "w", None, 1, []],
        [1, "w", "p", 0, []],  # seq: < 1, not an int, a bool
        [1, "w", "p", -3, []],
        [1, "w", "p", True, []],
        [1, "w", "p", "1", []],
        [1, "w", "p", 1.0, []],
        [1, "w", "p", None, []],
        [1, "w", "p", 1, {"0": ["set", "k", 1]}],  # writes not a list
        [1, "w", "p", 1, None],
        [1, "w", "p", 1],  # wrong length
        [1, "w", "p", 1, [], "extra"],
        {"version": 1},  # not a list
        "w",
        None,
    ],
)
def test_unpack_batch_refuses_what_is_not_a_batch(obj: Any) -> None:
    with pytest.raises(InvalidMessage):
        unpack_batch(batch_body(obj))


def test_unpack_batch_accepts_a_64_char_producer() -> None:
    assert unpack_batch(batch_body([1, "w", "p" * 64, 1, []])) == ("p" * 64, 1, [])


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"\x95\x01\xa1w", b"not msgpack at all"])
def test_unpack_batch_refuses_garbage(garbage: bytes) -> None:
    with pytest.raises(InvalidMessage):
        unpack_batch(garbage)


def test_unpack_batch_refuses_oversize_bodies() -> None:
    writes = [pack_write("set", f"k{i}", b"v" * 60_000) for i in range(18)]
    body = pack_batch("p", 1, writes)
    assert len(body) > MAX_BATCH_BYTES
    with pytest.raises(InvalidMessage):
        unpack_batch(body)


def test_batches_the_largest_allowed_batch_max_bytes_lets_through_can_be_decoded() -> None:
    # A producer seals a batch once it would exceed batch_max_bytes - 256; the
    # workers must be able to decode every batch a valid configuration can
    # produce, or confirmed writes end up dead letters.
    with pytest.raises(ConfigError):
        Settings(batch_max_bytes=MAX_BATCH_BYTES + 1)
    largest = Settings(batch_max_bytes=MAX_BATCH_BYTES).batch_max_bytes
    write = pack_write("set", "k", b"v" * 60_000)
    count = (largest - 256) // len(write)
    body = pack_batch("p", 1, [write] * count)
    assert len(body) <= largest
    _, _, writes = unpack_batch(body)
    assert len(writes) == count


# -- property: any list of valid writes survives a batch round trip ----------

KEYS = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=130)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
    | st.binary(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
NUMBERS = st.integers(min_value=-(2**40), max_value=2**40) | st.floats(allow_nan=False)


def writes_of(op: str, value: st.SearchStrategy[Any],
              arg: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.tuples(st.just(op), KEYS, value, arg).map(list)


WRITES = st.one_of(
    writes_of("set", VALUES, st.none()),
    writes_of("delete", st.none(), st.none()),
    writes_of("incr", NUMBERS, st.none()),
    writes_of("merge", st.dictionaries(st.text(max_size=5), VALUES, max_size=4), st.none()),
    writes_of("append", VALUES, st.none() | st.integers(min_value=1, max_value=10**6)),
    writes_of("setnx", VALUES, st.none()),
    writes_of("cas", VALUES, st.integers(min_value=0, max_value=2**32)),
    writes_of("custom_op", VALUES, st.none()),
)


@settings(max_examples=100, deadline=None)
@given(
    producer_id=st.text(min_size=1, max_size=64),
    first_seq=st.integers(min_value=1, max_value=2**63 - 1),
    writes=st.lists(WRITES, max_size=40),
)
def test_any_valid_writes_round_trip_through_a_batch(
    producer_id: str, first_seq: int, writes: list[list[Any]]
) -> None:
    body = pack_batch(producer_id, first_seq, [pack_write(*w) for w in writes])
    got_producer, got_seq, got_writes = unpack_batch(body)
    assert (got_producer, got_seq) == (producer_id, first_seq)
    expected = [w[:3] if w[3] is None else w for w in writes]
    assert got_writes == expected
    assert [write_fields(w) for w in got_writes] == [tuple(w) for w in writes]
