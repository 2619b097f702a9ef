"""liftline.workers.rpc.ReadServer over a recording channel: what the owner answers,
when it parks a request, and that bad bytes get a bad_request reply, not a crash."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from liftline.partitioning import partition_for
from liftline.reads.protocol import (
    MAX_WAIT_MS,
    GetManyRequest,
    GetRequest,
    StatusRequest,
    encode_request,
)
from liftline.store.memory import PartitionStore
from liftline.tickets import Ticket
from liftline.workers.rpc import ReadServer

P = 4


class Channel:
    """Records what the server publishes, decoded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def queue_declare(self, queue: str, **_kw: Any) -> None:
        pass

    def basic_consume(self, queue: str, callback: Any, **_kw: Any) -> None:
        pass

    def basic_publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Any = None) -> None:
        self.sent.append((routing_key, properties.correlation_id, msgpack.unpackb(body)))


def key_in(partition: int, n: int = 0) -> str:
    """The ``n``-th key ``k<i>`` that lands in ``partition``."""
    return [f"k{i}" for i in range(1000) if partition_for(f"k{i}", P) == partition][n]


@pytest.fixture
def held() -> dict[int, PartitionStore]:
    store = PartitionStore(1)
    store.apply_batch(0, "prod", 1, [["set", key_in(1), "one"]])
    return {1: store}


@pytest.fixture
def wired(held: dict[int, PartitionStore]) -> tuple[ReadServer, Channel]:
    server, channel = ReadServer(P, held.get), Channel()
    server.attach(channel, "rpc")
    return server, channel


def ask(server: ReadServer, body: bytes, corr: str = "c1", reply_to: str = "me") -> None:
    server._on_request(None, None, SimpleNamespace(reply_to=reply_to, correlation_id=corr), body)


def test_answers_from_the_store_held(wired: tuple[ReadServer, Channel]) -> None:
    server, channel = wired
    ask(server, encode_request(GetRequest(key_in(1))))
    ask(server, encode_request(GetRequest(key_in(2))), "c2")
    ask(server, encode_request(GetManyRequest((key_in(1), key_in(2), key_in(1, 1)))), "c3")
    assert channel.sent == [
        ("me", "c1", {"ok": True, "found": True, "p": 1, "v": "one", "ver": 1, "off": 0}),
        ("me", "c2", {"ok": False, "code": "not_owner", "p": 2,
                      "err": "partition 2 is not held here"}),
        ("me", "c3", {"ok": True, "vals": [[True, "one", 1], None, [False, None, 0]]}),
    ]


def test_bad_requests_get_a_reply_and_no_reply_to_gets_none(
        wired: tuple[ReadServer, Channel]) -> None:
    server, channel = wired
    ask(server, b"\xc1")
    ask(server, msgpack.packb({"k": ""}), "c2")
    ask(server, encode_request(GetRequest(key_in(1))), "c3", reply_to="")
    assert [(corr, body["code"]) for _, corr, body in channel.sent] == [
        ("c1", "bad_request"), ("c2", "bad_request")]
    assert "not valid msgpack" in channel.sent[0][2]["err"]
    assert channel.sent[1][2]["err"] == "k: key must not be empty"


def test_a_read_after_a_write_not_applied_yet_is_parked_until_it_is(
        wired: tuple[ReadServer, Channel], held: dict[int, PartitionStore]) -> None:
    server, channel = wired
    ask(server, encode_request(GetRequest(key_in(1), Ticket(1, "prod", 2), 5000)))
    server.serve_parked(time.monotonic())
    assert channel.sent == []
    held[1].apply_batch(1, "prod", 2, [["set", key_in(1), "two"]])
    server.serve_parked(time.monotonic())
    assert channel.sent == [("me", "c1", {"ok": True, "found": True, "p": 1, "v": "two",
                                          "ver": 2, "off": 1})]


def test_a_wait_past_its_deadline_answers_with_the_position(
        wired: tuple[ReadServer, Channel]) -> None:
    server, channel = wired
    ask(server, encode_request(GetRequest(key_in(1), Ticket(1, "prod", 9), 100)))
    ask(server, encode_request(StatusRequest(Ticket(1, "prod", 9), 10**9)), "c2")
    server.serve_parked(time.monotonic() + 1)
    assert channel.sent == [("me", "c1", {
        "ok": False, "code": "timeout", "p": 1, "off": 0, "seq": 1,
        "err": "the write was not applied within the timeout"})]
    # A wait is capped at MAX_WAIT_MS, whatever the request asked.
    server.serve_parked(time.monotonic() + MAX_WAIT_MS / 1000 + 1)
    assert channel.sent[1] == ("me", "c2", {"ok": True, "applied": False, "p": 1, "seq": 1,
                                            "off": 0})


def test_a_status_without_a_wait_is_answered_at_once(wired: tuple[ReadServer, Channel]) -> None:
    server, channel = wired
    ask(server, encode_request(StatusRequest(Ticket(1, "prod", 1))))
    ask(server, encode_request(StatusRequest(Ticket(1, "prod", 2))), "c2")
    ask(server, encode_request(StatusRequest(Ticket(3, "prod", 1))), "c3")
    assert [body for _, _, body in channel.sent] == [
        {"ok": True, "applied": True, "p": 1, "seq": 1, "off": 0},
        {"ok": True, "applied": False, "p": 1, "seq": 1, "off": 0},
        {"ok": False, "code": "not_owner", "p": 3, "err": "partition 3 is not held here"}]


def test_detach_drops_parked_requests(wired: tuple[ReadServer, Channel]) -> None:
    server, channel = wired
    ask(server, encode_request(GetRequest(key_in(1), Ticket(1, "prod", 5), 100)))
    server.detach()
    server.serve_parked(time.monotonic() + 1)
    assert channel.sent == []
