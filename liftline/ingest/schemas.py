"""JSON Schemas of the HTTP service, each beside the rule the server applies.

The OpenAPI document at ``/openapi.json`` must say exactly what the server
accepts: a request valid by the schema is never refused as invalid, and one
the schema rules out is never accepted. So the few rules JSON Schema cannot
say as the core says them are stated here in a form it can, and
:mod:`liftline.ingest.validation` applies the same form:

- a key is 1-512 UTF-8 bytes in the core; over HTTP it is 1-128 characters of
  any kind, or 1-512 ASCII characters (both fit 512 bytes);
- a value is any JSON whose numbers lie in -2**63 .. 2**64 (excluded), the integers
  msgpack carries (a larger float is refused too: JSON Schema cannot tell 1e20 from
  100000000000000000000);
- a ticket names a partition of this cluster (0..P-1), a producer id of 1-64
  printable ASCII characters and a sequence number >= 1.

Two limits stay in words only (``description``), as JSON Schema has no way to
say them: a value's packed size (64 KiB) and its nesting depth (32).
"""

from __future__ import annotations

import re
from typing import Any

from liftline import codec

KEY_ANY_CHARS = codec.MAX_KEY_BYTES // 4  # 4 bytes per character at most in UTF-8
INT_MIN, INT_END = -(2**63), 2**64  # msgpack: int64 .. uint64
KEY_PATTERN = rf"^(?:[\s\S]{{1,{KEY_ANY_CHARS}}}|[\x00-\x7f]{{1,{codec.MAX_KEY_BYTES}}})$"
PRODUCER_ID = r"[!-~]{1,64}"
SEQ = r"[1-9][0-9]{0,18}"

REF = "#/components/schemas/"
KEY_REF = {"$ref": REF + "Key"}
VALUE_REF = {"$ref": REF + "Value"}
NUMBER_REF = {"$ref": REF + "Number"}
TICKET_REF = {"$ref": REF + "Ticket"}


def int_range_pattern(lo: int, hi: int) -> str:
    """A regex (no anchors) for the decimal integers lo..hi, without leading zeros."""
    if not 0 <= lo <= hi:
        raise ValueError(f"bad range {lo}..{hi}")
    parts: list[str] = []
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        first = 0 if digits == 1 else 10 ** (digits - 1)
        a, b = max(lo, first), min(hi, 10**digits - 1)
        if a <= b:
            parts += _same_length(str(a), str(b))
    return "(?:" + "|".join(parts) + ")"


def _same_length(a: str, b: str) -> list[str]:
    """Patterns for the digit strings a..b of one length (a <= b)."""
    if len(a) == 1:
        return [a if a == b else f"[{a}-{b}]"]
    if a[0] == b[0]:
        return [a[0] + "(?:" + "|".join(_same_length(a[1:], b[1:])) + ")"]
    n = len(a) - 1
    out = [a[0] + "(?:" + "|".join(_same_length(a[1:], "9" * n)) + ")"]
    if int(b[0]) - int(a[0]) > 1:
        low, high = int(a[0]) + 1, int(b[0]) - 1
        out.append((str(low) if low == high else f"[{low}-{high}]") + "[0-9]" * n)
    out.append(b[0] + "(?:" + "|".join(_same_length("0" * n, b[1:])) + ")")
    return out


def ticket_pattern(partitions: int) -> str:
    return rf"^{int_range_pattern(0, partitions - 1)}\.{PRODUCER_ID}\.{SEQ}$"


_TICKETS: dict[int, re.Pattern[str]] = {}


def ticket_matches(text: str, partitions: int) -> bool:
    """Whether ``text`` is a ticket of a cluster with ``partitions`` (the schema's rule)."""
    compiled = _TICKETS.get(partitions)
    if compiled is None:
        compiled = _TICKETS[partitions] = re.compile(ticket_pattern(partitions))
    return compiled.fullmatch(text) is not None


def key_allowed(key: Any) -> bool:
    """The HTTP rule for keys, the one :data:`KEY` states."""
    return (isinstance(key, str) and len(key) > 0
            and (len(key) <= KEY_ANY_CHARS or len(key) <= codec.MAX_KEY_BYTES and key.isascii()))


def numbers_allowed(value: Any) -> bool:
    """Whether every number in ``value`` lies where :data:`NUMBER` says.

    JSON Schema sees 1e20 and 100000000000000000000 as the same number; msgpack
    carries the first (a float) and not the second. Both are refused, so that the
    rule is one the schema can state.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int | float) and not isinstance(item, bool) \
                and not INT_MIN <= item < INT_END:
            return False
    return True


KEY = {
    "type": "string", "minLength": 1, "maxLength": codec.MAX_KEY_BYTES,
    "pattern": KEY_PATTERN,
    "description": f"1-{KEY_ANY_CHARS} characters, or 1-{codec.MAX_KEY_BYTES} ASCII characters "
                   f"(at most {codec.MAX_KEY_BYTES} bytes of UTF-8 either way)",
}
# One schema each, not a choice among several: an integer with no fraction can only be
# out of range past 2^53, so "integers in range, or any number with a fraction" is
# simply a range; and each keyword below applies to its own type only.
NUMBER = {"type": "number", "minimum": INT_MIN, "exclusiveMaximum": INT_END,
          "description": "from -2^63 to below 2^64 (what msgpack carries)"}
VALUE = {
    "type": ["null", "boolean", "string", "number", "array", "object"],
    "minimum": INT_MIN, "exclusiveMaximum": INT_END,
    "items": VALUE_REF, "additionalProperties": VALUE_REF,
    "description": f"any JSON whose numbers lie in -2^63..2^64 (excluded); at most "
                   f"{codec.MAX_VALUE_BYTES // 1024} KiB once packed (msgpack) and "
                   f"{codec.MAX_DEPTH} levels deep (larger or deeper: 422)",
}


def ticket_schema(partitions: int) -> dict[str, Any]:
    return {"type": "string", "pattern": ticket_pattern(partitions),
            "description": f"partition.producer_id.seq (partition 0..{partitions - 1})",
            "example": "3.9f2c1a7be04d5c11.42"}


def components(partitions: int) -> dict[str, Any]:
    """The shared schemas every route refers to."""
    return {"Key": KEY, "Value": VALUE, "Number": NUMBER, "Ticket": ticket_schema(partitions)}


# -- writes ------------------------------------------------------------------
_OP_TEXT = {"set": "replace", "delete": "remove the key (a value, if sent, is ignored)",
            "incr": "add a number", "merge": "shallow-update an object", "setnx": "set if absent",
            "append": "append to a list, keep the newest `cap`",
            "cas": "set if the key's version equals expected_version (0 = absent)"}


def write_schema(op: str) -> dict[str, Any]:
    """One write of ``op``: exactly the fields and value types that op takes."""
    props: dict[str, Any] = {"op": {"const": op}, "key": KEY_REF, "value": VALUE_REF}
    required = ["op", "key", "value"]
    if op == "delete":
        required = ["op", "key"]
    elif op == "incr":
        props["value"] = NUMBER_REF
    elif op == "merge":
        props["value"] = {"type": "object", "additionalProperties": VALUE_REF}
    elif op == "append":
        props["cap"] = {"type": "integer", "minimum": 1, "exclusiveMaximum": INT_END}
    elif op == "cas":
        props["expected_version"] = {"type": "integer", "minimum": 0,
                                     "exclusiveMaximum": INT_END}
        required.append("expected_version")
    return {"type": "object", "title": op,
            "description": _OP_TEXT.get(op, "a reducer of the app"),
            "required": required, "additionalProperties": False, "properties": props}


def write_schemas(ops: frozenset[str]) -> dict[str, Any]:
    """Any write of one of ``ops`` (one schema per op)."""
    return {"oneOf": [write_schema(op) for op in sorted(ops)]}
