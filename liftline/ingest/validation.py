"""Request bodies and parameters: size limit, JSON, and checks that name the field.

Every refusal is an :class:`ApiError`, answered as JSON
``{"error": code, "message": text, "field": name-or-null}``: 400 for bytes that
are not JSON, 413 for a body over the limit, 415 for a non-JSON content type,
422 for JSON whose fields are wrong (the ``field`` says which, e.g.
``writes[3].value``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from liftline import codec
from liftline.errors import InvalidWrite
from liftline.ingest.schemas import key_allowed, numbers_allowed, ticket_matches
from liftline.tickets import Ticket

WRITE_FIELDS = frozenset({"op", "key", "value", "cap", "expected_version"})
CONSISTENCY = ("primary", "stale")
MAX_WAIT_MS = 60_000
_INTEGER = re.compile(r"-?[0-9]{1,12}")


class ApiError(Exception):
    """An HTTP error answer with a JSON body naming what was wrong."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        body = {"error": self.code, "message": self.message, "field": self.field, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid", f"{field}: {message}" if field else message, field=field)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body decoded as JSON, within ``max_bytes``."""
    check_json_headers(request.headers.get("content-type", ""),
                       request.headers.get("content-length"), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
    return decode_json(b"".join(chunks))


def check_json_headers(ctype: str, length: str | None, max_bytes: int) -> None:
    """415 for a content type that is not JSON, 413 for a Content-Length over ``max_bytes``
    (checked before any byte of the body is read)."""
    if ctype and not _is_json(ctype):
        raise ApiError(415, "unsupported_media_type",
                       f"content-type {ctype!r}: send application/json")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ApiError(413, "too_large", f"body of {length} bytes exceeds {max_bytes}")


def too_large(max_bytes: int) -> ApiError:
    """The 413 for a body whose bytes, as they arrive, pass ``max_bytes``."""
    return ApiError(413, "too_large", f"body exceeds {max_bytes} bytes")


def decode_json(raw: bytes) -> Any:
    """A whole body as JSON; 400 for an empty body or bytes that are not JSON."""
    if not raw:
        raise ApiError(400, "bad_json", "empty body: send a JSON object")
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except RecursionError:
        raise ApiError(400, "bad_json", "the JSON body nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"body is not JSON: {exc}") from None


# Built once: json.loads with any option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _is_json(ctype: str) -> bool:
    media = ctype.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def require_object(body: Any, field: str = "") -> dict[str, Any]:
    """``body`` when it is a JSON object; 422 naming ``field`` (or ``body``) otherwise."""
    if not isinstance(body, dict):
        raise invalid(field or "body", f"expected a JSON object, got {_kind(body)}")
    return body


def parse_write(body: Any, ops: frozenset[str] | None,
                field: str = "") -> tuple[str, str, Any, Any]:
    """(op, key, value, arg) of one write object; ApiError 422 naming the field otherwise.

    ``{"op", "key", "value", "cap"?, "expected_version"?}``; ``ops`` are the
    accepted op names (None: any; the worker dead-letters unknown ones).
    """
    prefix = f"{field}." if field else ""
    obj = require_object(body, field)
    unknown = sorted(set(obj) - WRITE_FIELDS)
    if unknown:
        raise invalid(prefix + unknown[0], f"unknown field; allowed: {sorted(WRITE_FIELDS)}")
    op = obj.get("op")
    if not isinstance(op, str) or not op:
        raise invalid(prefix + "op", "required, a non-empty string")
    if ops is not None and op not in ops:
        raise invalid(prefix + "op", f"unknown op {op!r}; one of {sorted(ops)}")
    key = check_key(obj.get("key"), prefix + "key")
    value = obj.get("value")
    arg: Any = None
    if op == "append":
        arg = integral(obj.get("cap"))
        if "cap" in obj and arg is None:
            raise invalid(prefix + "cap", "an integer >= 1 (leave it out for the default)")
    elif op == "cas":
        arg = integral(obj.get("expected_version"))
        if arg is None:
            raise invalid(prefix + "expected_version", "required for cas (0 = absent)")
    for name in ("cap", "expected_version"):
        if name in obj and not (name == "cap" and op == "append"
                                or name == "expected_version" and op == "cas"):
            raise invalid(prefix + name, f"not allowed for op {op!r}")
    if op not in ("delete",) and "value" not in obj:
        raise invalid(prefix + "value", "required")
    if not numbers_allowed(value):
        raise invalid(prefix + "value", "numbers must lie in -2^63..2^64 (excluded)")
    try:
        codec.check_write(op, key, value, arg)
    except InvalidWrite as exc:
        text = str(exc)
        name = "cap" if "cap" in text else "expected_version" if "expected" in text else "value"
        raise invalid(prefix + name, text) from None
    return op, str(key), value, arg


def check_key(key: Any, field: str = "key") -> str:
    """A key as the HTTP schema allows it (see :data:`liftline.ingest.schemas.KEY`)."""
    try:
        codec.check_key(key)
    except InvalidWrite as exc:
        raise invalid(field, str(exc)) from None
    if not key_allowed(key):
        raise invalid(field, "over HTTP a key is at most 128 characters, or 512 ASCII ones")
    return str(key)


def write_error_field(exc: InvalidWrite, field: str = "") -> ApiError:
    """A limit found while packing (value size, unencodable numbers) → 422 on ``value``."""
    return invalid(f"{field}.value" if field else "value", str(exc))


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if _INTEGER.fullmatch(raw) is None:
        raise invalid(name, f"expected an integer, got {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise invalid(name, f"must be {lo}..{hi}")
    return value


def read_options(request: Request, partitions: int) -> tuple[str, Ticket | None, int]:
    """(consistency, after ticket or None, timeout_ms) from the query string."""
    consistency = request.query_params.get("consistency", "primary")
    if consistency not in CONSISTENCY:
        raise invalid("consistency", f"one of {list(CONSISTENCY)}")
    # With consistency=stale, ``after`` waits until the write is persisted in Redis.
    after = parse_ticket(request.query_params.get("after"), partitions, "after")
    timeout_ms = query_int(request, "timeout_ms", 2000, 0, MAX_WAIT_MS)
    return consistency, after, timeout_ms


def parse_ticket(raw: str | None, partitions: int, field: str = "ticket") -> Ticket | None:
    if raw is None:
        return None
    if not ticket_matches(raw, partitions):
        raise invalid(field, f"expected partition.producer_id.seq: a partition 0..{partitions - 1}"
                             ", 1-64 printable ASCII characters, a number >= 1")
    return Ticket.parse(raw)


def bounded_int(value: Any, field: str, lo: int, hi: int) -> int:
    """An integer field of a body (3.0 counts, as in JSON Schema; 3.5 does not)."""
    value = integral(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value):
            raise invalid(field, "expected an integer, got a fraction")
        raise invalid(field, f"expected an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise invalid(field, f"must be {lo}..{hi}")
    return value


def integral(value: Any) -> Any:
    """A float with no fraction as an int (JSON Schema's "integer" takes 3.0); else as is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")
