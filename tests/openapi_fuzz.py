"""Requests generated from an OpenAPI document, with hypothesis.

For each operation: path parameters, query parameters and a JSON body drawn
from their schemas, mostly valid and sometimes not (wrong types, out of range,
unknown fields, bytes that are not JSON, a wrong content type). Used by the
ingest fuzz test: whatever comes in, the service must answer with a status the
document declares and a JSON error body, never a 5xx it does not.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# What a write's value may be: JSON whose integers msgpack carries.
VALUE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(
        allow_nan=False, allow_infinity=False, max_value=1e18, min_value=-1e18)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=12)
# Query values the server waits on are kept short, so a run stays bounded in time.
CAPS = {"timeout_ms": 200}


@dataclass
class Operation:
    method: str
    path: str
    spec: dict[str, Any]
    params: list[dict[str, Any]] = field(default_factory=list)

    @property
    def statuses(self) -> set[int]:
        return {int(s) for s in self.spec["responses"]}


@dataclass
class Generated:
    operation: Operation
    url: str
    body: bytes | None
    headers: dict[str, str]


def operations(document: dict[str, Any]) -> list[Operation]:
    out = []
    for path, methods in sorted(document["paths"].items()):
        for method, spec in sorted(methods.items()):
            out.append(Operation(method.upper(), path, spec, spec.get("parameters", [])))
    return out


def value_for(schema: dict[str, Any], document: dict[str, Any], name: str = "") -> Any:
    """A strategy for JSON values of ``schema``: valid most of the time."""
    return st.one_of(_valid(schema, document, name), _valid(schema, document, name),
                     _valid(schema, document, name), ANY_JSON)


def _valid(schema: dict[str, Any], document: dict[str, Any], name: str) -> Any:
    if schema.get("$ref") == "#/components/schemas/Value":  # recursive: drawn as JSON
        return VALUE_JSON
    if "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _valid(target, document, name)
    for either in ("oneOf", "anyOf"):
        if either in schema:
            return st.one_of(*(_valid(choice, document, name) for choice in schema[either]))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "integer":
        lo = schema.get("minimum", -(2**40))
        hi = min(schema.get("maximum", 2**40), schema.get("exclusiveMaximum", 2**63) - 1,
                 CAPS.get(name, 2**62))
        return st.integers(lo, hi)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if "pattern" in schema and schema.get("maxLength", 0) > 80:  # e.g. a key: draw short
            pattern = re.compile(schema["pattern"])
            return st.text(min_size=max(1, schema.get("minLength", 0)), max_size=40).filter(
                lambda s: pattern.search(s) is not None)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) < 80)
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get(
            "maxLength", 40), 40))
    if kind == "array":
        return st.lists(_valid(schema.get("items", {}), document, ""),
                        min_size=schema.get("minItems", 0), max_size=5)
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: value_for(v, document, k) for k, v in props.items() if k in required},
            optional={k: value_for(v, document, k) for k, v in props.items()
                      if k not in required})
    return ANY_JSON


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


@st.composite
def requests(draw: Any, op: Operation, document: dict[str, Any]) -> Generated:
    """One request to ``op``: parameters and body from the schemas, sometimes broken."""
    path = op.path
    query: list[tuple[str, str]] = []
    for param in op.params:
        schema = param.get("schema", {})
        if param["in"] == "path":
            raw = _as_text(draw(value_for(schema, document, param["name"])))
            if not raw:
                raw = "x"
            path = path.replace("{" + param["name"] + "}", urllib.parse.quote(raw, safe=""))
        elif param.get("required") or param["name"] in CAPS or draw(st.booleans()):
            # A capped parameter is always sent: left out, its default (2 s) applies.
            raw = _as_text(draw(value_for(schema, document, param["name"])))
            query.append((param["name"], raw))
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    headers = {}
    body: bytes | None = None
    content = op.spec.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        shape = draw(st.sampled_from(["schema", "schema", "schema", "any", "bytes"]))
        if shape == "bytes":
            body = draw(st.binary(max_size=64))
        else:
            value = draw(value_for(content["schema"], document) if shape == "schema"
                         else ANY_JSON)
            body = json.dumps(value).encode()
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/json", "application/json; charset=utf-8",
             "text/plain"]))
    return Generated(op, url, body, headers)


def route_matches(op: Operation, url: str) -> bool:
    """False when a generated path parameter (e.g. one holding '/') leaves the route."""
    pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(op.path)) + "$"
    return re.match(pattern, urllib.parse.unquote(url.split("?", 1)[0])) is not None
