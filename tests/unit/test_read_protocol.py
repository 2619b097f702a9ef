"""liftline.reads.protocol: the owner-read envelopes round-trip, keep today's wire
format, and refuse every malformed message with a reason."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from liftline.errors import InvalidMessage
from liftline.reads.protocol import (
    MAX_KEYS_PER_READ,
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    Entry,
    ErrorReply,
    GetManyRequest,
    GetRequest,
    StatusReply,
    StatusRequest,
    ValueReply,
    ValuesReply,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from liftline.tickets import Ticket

TICKET = Ticket(3, "p-1.a", 17)


def packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize("request_", [
    GetRequest("skier:812"),
    GetRequest("skier:812", TICKET, 2500),
    GetRequest("ключ", None, 0),
    GetManyRequest(()),
    GetManyRequest(("a", "b", "c" * 512)),
    StatusRequest(TICKET),
    StatusRequest(TICKET, 60_000),
])
def test_requests_round_trip(request_: Any) -> None:
    assert decode_request(encode_request(request_)) == request_


@pytest.mark.parametrize("reply", [
    ValueReply(True, {"lift": 21, "tags": [1, 2.5, None, b"\x00"]}, 4, 3, 1200),
    ValueReply(False, None, 0, 0, -1),
    ValuesReply(()),
    ValuesReply((Entry(True, 7, 2), None, Entry(False, None, 0))),
    StatusReply(True, 3, 17, 99),
    StatusReply(False, 0, 0, -1),
    ErrorReply("bad_request", "k: key must not be empty"),
    ErrorReply("not_owner", "partition 5 is not held here", 5),
    ErrorReply("timeout", "not applied", 3, 1200, 16),
])
def test_replies_round_trip(reply: Any) -> None:
    assert decode_reply(encode_reply(reply)) == reply


def test_the_wire_format_is_the_one_workers_and_readers_spoke_before() -> None:
    assert msgpack.unpackb(encode_request(GetRequest("k", TICKET, 300))) == {
        "k": "k", "t": 300, "after": [3, "p-1.a", 17]}
    assert msgpack.unpackb(encode_request(GetRequest("k"))) == {"k": "k", "t": 0}
    assert msgpack.unpackb(encode_request(GetManyRequest(("a", "b")))) == {"ks": ["a", "b"]}
    assert msgpack.unpackb(encode_request(StatusRequest(TICKET, 5))) == {
        "st": [3, "p-1.a", 17], "t": 5}
    assert msgpack.unpackb(encode_reply(ValueReply(True, "v", 2, 1, 40))) == {
        "ok": True, "found": True, "p": 1, "v": "v", "ver": 2, "off": 40}
    assert msgpack.unpackb(encode_reply(ValuesReply((Entry(True, 1, 1), None)))) == {
        "ok": True, "vals": [[True, 1, 1], None]}
    assert msgpack.unpackb(encode_reply(StatusReply(False, 2, 9, 30))) == {
        "ok": True, "applied": False, "p": 2, "seq": 9, "off": 30}
    assert msgpack.unpackb(encode_reply(ErrorReply("timeout", "late", 2, 30, 9))) == {
        "ok": False, "code": "timeout", "err": "late", "p": 2, "off": 30, "seq": 9}
    assert msgpack.unpackb(encode_reply(ErrorReply("bad_request", "no"))) == {
        "ok": False, "code": "bad_request", "err": "no"}
    # What older readers send: no t, a nil after, extra fields are ignored.
    assert decode_request(packed({"k": "k"})) == GetRequest("k")
    assert decode_request(packed({"k": "k", "after": None, "t": None, "x": 1})) == GetRequest("k")
    assert decode_request(packed({"st": [0, "p", 1]})) == StatusRequest(Ticket(0, "p", 1))


@pytest.mark.parametrize(("body", "reason"), [
    ([1, 2], "request must be a map"),
    ("k", "request must be a map"),
    ({}, "exactly one of k, ks, st"),
    ({"k": "a", "ks": ["a"]}, "exactly one of k, ks, st"),
    ({"k": "a", "st": [0, "p", 1]}, "exactly one of k, ks, st"),
    ({"k": None}, "k: key must be a string"),
    ({"k": 5}, "k: key must be a string"),
    ({"k": ""}, "k: key must not be empty"),
    ({"k": "é" * 300}, "k: key is longer than 512 bytes"),
    ({"k": "a", "t": -1}, "t must be an int >= 0"),
    ({"k": "a", "t": True}, "t must be an int >= 0"),
    ({"k": "a", "t": "100"}, "t must be an int >= 0"),
    ({"k": "a", "t": 1.5}, "t must be an int >= 0"),
    ({"k": "a", "after": [1, "p"]}, "after must be [partition, producer, seq]"),
    ({"k": "a", "after": "1.p.1"}, "after must be [partition, producer, seq]"),
    ({"k": "a", "after": []}, "after must be [partition, producer, seq]"),
    ({"k": "a", "after": [-1, "p", 1]}, "after must be [partition >= 0"),
    ({"k": "a", "after": [1, "", 1]}, "after must be [partition >= 0"),
    ({"k": "a", "after": [1, "p", 0]}, "after must be [partition >= 0"),
    ({"k": "a", "after": [True, "p", 1]}, "after must be [partition >= 0"),
    ({"ks": "a"}, f"ks must be a list of at most {MAX_KEYS_PER_READ} keys"),
    ({"ks": ["a"] * (MAX_KEYS_PER_READ + 1)}, "ks must be a list of at most"),
    ({"ks": ["a", 7]}, "ks: key must be a string"),
    ({"ks": ["a", ""]}, "ks: key must not be empty"),
    ({"st": None}, "st must be [partition, producer, seq]"),
    ({"st": [1, "p", 1, 4]}, "st must be [partition, producer, seq]"),
    ({"st": [1, 2, 3]}, "st must be [partition >= 0, producer id, seq >= 1]"),
    ({"st": [1, "p", "3"]}, "st must be [partition >= 0, producer id, seq >= 1]"),
    ({"st": [1.0, "p", 3]}, "st must be [partition >= 0, producer id, seq >= 1]"),
    ({"st": [1, "p", 3], "t": -5}, "t must be an int >= 0"),
])
def test_every_malformed_request_is_refused_with_its_reason(body: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_request(packed(body))
    assert reason in str(caught.value)


@pytest.mark.parametrize(("body", "reason"), [
    ([True], "reply must be a map"),
    ({"found": True}, "reply needs ok: true or false"),
    ({"ok": 1, "found": True}, "reply needs ok: true or false"),
    ({"ok": False, "code": "boom"}, "error code must be one of"),
    ({"ok": False}, "error code must be one of"),
    ({"ok": False, "code": "timeout", "err": 3}, "err must be a string"),
    ({"ok": False, "code": "timeout", "err": "", "off": "x"}, "off must be an int >= -1"),
    ({"ok": False, "code": "not_owner", "err": "", "p": -2}, "p must be an int >= 0"),
    ({"ok": True}, "a successful reply needs found, vals or applied"),
    ({"ok": True, "vals": {"a": 1}}, "vals must be a list"),
    ({"ok": True, "vals": [[True, 1]]}, "each of vals must be [found, value, version]"),
    ({"ok": True, "vals": [[1, 1, 1]]}, "found must be true or false"),
    ({"ok": True, "vals": [[True, 1, -1]]}, "version must be an int >= 0"),
    ({"ok": True, "found": "yes", "p": 0, "ver": 0, "off": 0}, "found must be true or false"),
    ({"ok": True, "found": True, "p": 0, "ver": None, "off": 0}, "ver must be an int >= 0"),
    ({"ok": True, "found": True, "p": 0, "ver": 1}, "off must be an int >= -1"),
    ({"ok": True, "applied": True, "p": 0, "seq": 1}, "off must be an int >= -1"),
    ({"ok": True, "applied": None, "p": 0, "seq": 1, "off": 0}, "applied must be true or false"),
])
def test_every_malformed_reply_is_refused_with_its_reason(body: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_reply(packed(body))
    assert reason in str(caught.value)


@pytest.mark.parametrize("decode", [decode_request, decode_reply])
@pytest.mark.parametrize(("body", "reason"), [
    (b"", "not valid msgpack"),
    (b"\xc1", "not valid msgpack"),                         # a byte msgpack never uses
    (packed({"k": "a"})[:-1], "not valid msgpack"),         # truncated
    (packed({"k": "a"}) + b"\x00", "not valid msgpack"),    # trailing bytes
    (b"\xd4\x05\x00", "extension type 5 is not allowed"),   # fixext 1
    (b"\x91" * 100_000 + b"\xc0", "not valid msgpack"),     # nested far too deep
    ("not bytes", "expected bytes"),
])
def test_garbage_bytes_are_refused(decode: Any, body: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(body)
    assert reason in str(caught.value)


def test_oversized_messages_are_refused_before_decoding() -> None:
    big_request = packed({"ks": ["k" * 500] * 17_000})
    assert len(big_request) > MAX_REQUEST_BYTES
    with pytest.raises(InvalidMessage, match="exceeds the 8388608-byte limit"):
        decode_request(big_request)
    big_reply = b"\x80" + b"\x00" * MAX_REPLY_BYTES
    with pytest.raises(InvalidMessage, match="exceeds the 67108864-byte limit"):
        decode_reply(big_reply)
    # A reply far bigger than any request is still fine.
    many = ValuesReply(tuple(Entry(True, "v" * 2000, 1) for _ in range(5000)))
    assert len(encode_reply(many)) > MAX_REQUEST_BYTES
    assert decode_reply(encode_reply(many)) == many
