"""The owner-read protocol: what a reader asks a partition's owner and what it answers.

Requests go to the owner's RPC queue (``Names.rpc_queue(member)``) with
``reply_to`` and ``correlation_id``; the reply comes back on direct reply-to.
Both are msgpack maps (:mod:`liftline.codec`, never pickle). Requests:

- get: ``{"k": key, "t": timeout_ms, "after": [partition, producer_id, seq]}``
  (``after`` absent or nil: answer at once). With ``after``, the owner answers
  once that write is applied here, or with a ``timeout`` error after ``t`` ms.
- get-many: ``{"ks": [key, …]}``, at most :data:`MAX_KEYS_PER_READ` keys.
- ticket status: ``{"st": [partition, producer_id, seq], "t": timeout_ms}``;
  with ``t`` > 0 the owner waits until the write is applied or the time is up.

A request holds exactly one of ``k``, ``ks``, ``st``; other fields are ignored
(room for later additions); ``t`` absent or nil means 0. Replies:

- value: ``{"ok": true, "found": bool, "v": value, "ver": version,
  "p": partition, "off": applied offset}``
- values: ``{"ok": true, "vals": [[found, value, version] | nil, …]}``, in the
  order of the keys; nil marks a key whose partition is not held there.
- status: ``{"ok": true, "applied": bool, "p": partition, "seq": the producer's
  watermark there, "off": applied offset, "exp": bool}``; ``exp`` (absent: false)
  says the producer id has expired there, so whether it was applied is too old to tell
- error: ``{"ok": false, "code": "bad_request" | "not_owner" | "timeout",
  "err": message, "p": partition, "off": offset, "seq": producer seq}``; ``p``
  comes with not_owner and timeout, ``off`` and ``seq`` (the owner's position)
  with timeout.

Decoding is bounded (:data:`MAX_REQUEST_BYTES`, :data:`MAX_REPLY_BYTES`) and
checks every field: anything else raises InvalidMessage saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

from liftline import codec
from liftline.errors import InvalidMessage, InvalidWrite
from liftline.tickets import Ticket

MAX_REQUEST_BYTES = 8 * 1024 * 1024
# Far above what one get-many chunk of ordinary values needs, below RabbitMQ's
# default largest message (128 MiB up to 3.13).
MAX_REPLY_BYTES = 64 * 1024 * 1024
MAX_KEYS_PER_READ = 10_000
MAX_WAIT_MS = 60_000

ErrorCode = Literal["bad_request", "not_owner", "timeout"]
ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))


@dataclass(frozen=True)
class GetRequest:
    """One key's value; with ``after``, once that write is applied (up to ``timeout_ms``)."""

    key: str
    after: Ticket | None = None
    timeout_ms: int = 0


@dataclass(frozen=True)
class GetManyRequest:
    """Many keys' values at once, from whatever this owner holds."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class StatusRequest:
    """Whether a ticket's write is applied; with ``timeout_ms``, wait until it is."""

    ticket: Ticket
    timeout_ms: int = 0


Request = GetRequest | GetManyRequest | StatusRequest


class Entry(NamedTuple):
    """One key of a values reply."""

    found: bool
    value: Any
    version: int


@dataclass(frozen=True)
class ValueReply:
    """A key as the owner holds it, and the partition's applied offset."""

    found: bool
    value: Any
    version: int
    partition: int
    offset: int


@dataclass(frozen=True)
class ValuesReply:
    """Per key of a get-many, in order: its entry, or None when its partition is not held."""

    entries: tuple[Entry | None, ...]


@dataclass(frozen=True)
class StatusReply:
    """Whether the write is applied, and the owner's position for its producer."""

    applied: bool
    partition: int
    seq: int
    offset: int
    expired: bool = False


@dataclass(frozen=True)
class ErrorReply:
    """A refused request; ``offset`` and ``seq`` are the owner's position on a timeout."""

    code: ErrorCode
    message: str
    partition: int | None = None
    offset: int | None = None
    seq: int | None = None


Reply = ValueReply | ValuesReply | StatusReply | ErrorReply


# -- encoding ----------------------------------------------------------------
def encode_request(request: Request) -> bytes:
    """The wire form of ``request`` (see the module docstring)."""
    body: dict[str, Any]
    if isinstance(request, GetRequest):
        body = {"k": request.key, "t": request.timeout_ms}
        if request.after is not None:
            body["after"] = list(request.after)
    elif isinstance(request, GetManyRequest):
        body = {"ks": list(request.keys)}
    else:
        body = {"st": list(request.ticket), "t": request.timeout_ms}
    return codec.pack(body)


def encode_reply(reply: Reply) -> bytes:
    """The wire form of ``reply`` (see the module docstring)."""
    body: dict[str, Any]
    if isinstance(reply, ValueReply):
        body = {"ok": True, "found": reply.found, "p": reply.partition, "v": reply.value,
                "ver": reply.version, "off": reply.offset}
    elif isinstance(reply, ValuesReply):
        body = {"ok": True, "vals": [None if e is None else list(e) for e in reply.entries]}
    elif isinstance(reply, StatusReply):
        body = {"ok": True, "applied": reply.applied, "p": reply.partition, "seq": reply.seq,
                "off": reply.offset}
        if reply.expired:
            body["exp"] = True
    else:
        body = {"ok": False, "code": reply.code, "err": reply.message}
        for name, value in (("p", reply.partition), ("off", reply.offset), ("seq", reply.seq)):
            if value is not None:
                body[name] = value
    return codec.pack(body)


# -- decoding ----------------------------------------------------------------
def decode_request(body: bytes) -> Request:
    """The request in ``body``; InvalidMessage saying what is wrong otherwise."""
    raw = _map(codec.unpack(body, max_bytes=MAX_REQUEST_BYTES), "request")
    kinds = [name for name in ("k", "ks", "st") if name in raw]
    if len(kinds) != 1:
        raise InvalidMessage("request must hold exactly one of k, ks, st")
    if "st" in raw:
        ticket = _ticket(raw["st"], "st")
        return StatusRequest(ticket, _optional(raw, "t", 0) or 0)
    if "ks" in raw:
        keys = raw["ks"]
        if not isinstance(keys, list) or len(keys) > MAX_KEYS_PER_READ:
            raise InvalidMessage(f"ks must be a list of at most {MAX_KEYS_PER_READ} keys")
        return GetManyRequest(tuple(_key(key, "ks") for key in keys))
    after = raw.get("after")
    return GetRequest(_key(raw["k"], "k"), None if after is None else _ticket(after, "after"),
                      _optional(raw, "t", 0) or 0)


def decode_reply(body: bytes) -> Reply:
    """The reply in ``body``; InvalidMessage saying what is wrong otherwise."""
    raw = _map(codec.unpack(body, max_bytes=MAX_REPLY_BYTES), "reply")
    ok = raw.get("ok")
    if not isinstance(ok, bool):
        raise InvalidMessage("reply needs ok: true or false")
    if not ok:
        code = raw.get("code")
        if code not in ERROR_CODES:
            raise InvalidMessage(f"error code must be one of {sorted(ERROR_CODES)}, got {code!r}")
        message = raw.get("err", "")
        if not isinstance(message, str):
            raise InvalidMessage("err must be a string")
        return ErrorReply(code, message, _optional(raw, "p", 0), _optional(raw, "off", -1),
                          _optional(raw, "seq", 0))
    if "vals" in raw:
        vals = raw["vals"]
        if not isinstance(vals, list):
            raise InvalidMessage("vals must be a list")
        return ValuesReply(tuple(None if v is None else _entry(v) for v in vals))
    if "applied" in raw:
        return StatusReply(_bool(raw["applied"], "applied"), _int(raw.get("p"), "p", 0),
                           _int(raw.get("seq"), "seq", 0), _int(raw.get("off"), "off", -1),
                           _bool(raw.get("exp", False), "exp"))
    if "found" in raw:
        return ValueReply(_bool(raw["found"], "found"), raw.get("v"),
                          _int(raw.get("ver"), "ver", 0), _int(raw.get("p"), "p", 0),
                          _int(raw.get("off"), "off", -1))
    raise InvalidMessage("a successful reply needs found, vals or applied")


def _map(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidMessage(f"{what} must be a map")
    return obj


def _int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidMessage(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _optional(raw: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = raw.get(name)
    return None if value is None else _int(value, name, minimum)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidMessage(f"{name} must be true or false, got {value!r}")
    return value


def _key(value: Any, name: str) -> str:
    try:
        return codec.check_key(value)
    except InvalidWrite as exc:
        raise InvalidMessage(f"{name}: {exc}") from None


def _ticket(raw: Any, name: str) -> Ticket:
    if not isinstance(raw, list) or len(raw) != 3:
        raise InvalidMessage(f"{name} must be [partition, producer, seq]")
    partition, producer, seq = raw
    if (isinstance(partition, bool) or not isinstance(partition, int) or partition < 0
            or not isinstance(producer, str) or not producer
            or isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise InvalidMessage(f"{name} must be [partition >= 0, producer id, seq >= 1]")
    return Ticket(partition, producer, seq)


def _entry(raw: Any) -> Entry:
    if not isinstance(raw, list) or len(raw) != 3:
        raise InvalidMessage("each of vals must be [found, value, version] or nil")
    return Entry(_bool(raw[0], "found"), raw[1], _int(raw[2], "version", 0))
