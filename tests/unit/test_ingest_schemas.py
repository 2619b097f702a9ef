"""The OpenAPI schemas and the server's own checks agree: what one accepts, so does the other.

Each rule the HTTP service applies is stated twice, as a JSON Schema (for
``/openapi.json``) and as code (``liftline.ingest.validation``); these tests
draw inputs, valid and not, and require both to give the same verdict.
"""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liftline import codec
from liftline.codec import BUILTIN_OPS
from liftline.errors import InvalidWrite
from liftline.ingest.schemas import (
    components,
    int_range_pattern,
    key_allowed,
    ticket_matches,
    write_schemas,
)
from liftline.ingest.validation import ApiError, parse_write
from liftline.tickets import Ticket

OPS = BUILTIN_OPS | {"lift_ride"}


def _validator(schema: dict, partitions: int = 16):
    return jsonschema_rs.validator_for({**schema, "components": {"schemas": components(
        partitions)}})


@pytest.mark.parametrize(("lo", "hi"), [(0, 0), (0, 9), (0, 15), (1, 366), (7, 123), (0, 1000),
                                        (99, 101), (1000, 9999), (5, 5), (0, 4095)])
def test_int_range_pattern_matches_exactly_the_range(lo, hi):
    pattern = re.compile(int_range_pattern(lo, hi))
    for n in range(0, 12_000):
        assert (pattern.fullmatch(str(n)) is not None) == (lo <= n <= hi), (lo, hi, n)
    assert pattern.fullmatch(f"0{hi}") is None  # no leading zeros


TICKET_TEXT = st.one_of(
    st.builds(lambda p, pid, seq: f"{p}.{pid}.{seq}", st.integers(-3, 40),
              st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=0,
                      max_size=70), st.integers(-2, 10**20)),
    st.text(max_size=30))


@settings(max_examples=600, deadline=None)
@given(TICKET_TEXT)
def test_ticket_rule_equals_its_schema(text):
    schema = _validator({"$ref": "#/components/schemas/Ticket"}, 16)
    assert schema.is_valid(text) == ticket_matches(text, 16), text
    if ticket_matches(text, 16):
        ticket = Ticket.parse(text)
        assert str(ticket) == text and 0 <= ticket.partition < 16


KEY_TEXT = st.one_of(st.text(max_size=140), st.text(max_size=600),
                     st.text(st.characters(max_codepoint=0x7f), min_size=100, max_size=600),
                     st.integers(), st.none())


@settings(max_examples=400, deadline=None)
@given(KEY_TEXT)
def test_key_rule_equals_its_schema(key):
    schema = _validator({"$ref": "#/components/schemas/Key"})
    assert schema.is_valid(key) == key_allowed(key), repr(key)[:80]
    if key_allowed(key):
        assert len(key.encode()) <= 512


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
WRITE = st.fixed_dictionaries(
    {"op": st.sampled_from(sorted(OPS | {"", "nope"}))},
    optional={"key": st.one_of(st.text(min_size=1, max_size=6), st.integers()),
              "value": JSON, "cap": st.one_of(st.integers(-2, 2**65), st.none(), st.just(2.0)),
              "expected_version": st.one_of(st.integers(-2, 2**65), st.just(1.5)),
              "colour": st.just("red")})


@settings(max_examples=1500, deadline=None)
@given(WRITE)
def test_write_rule_equals_its_schema(write):
    schema = _validator(write_schemas(OPS))
    try:  # what the server does: check the fields, then pack the write
        codec.pack_write(*parse_write(write, OPS))
        accepted = True
    except ApiError as exc:
        assert exc.status == 422
        accepted = False
    except InvalidWrite:
        accepted = False
    assert schema.is_valid(write) == accepted, write
