"""One read behaviour for both clients, the blocking reader (OwnerReader / RedisReader)
and the HTTP service: ``source`` names the owner that answered (``owner:<member>``) or
``redis``, and a read ``after`` a ticket of another partition waits until that
ticket's owner applied it, then reads the key's owner."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from helpers import wait_until
from http_ingest import Servers
from pipeline import Workers, wait_flushed

from liftline.partitioning import partition_for
from liftline.producer import Producer
from liftline.reads import OwnerReader, RedisReader
from liftline.reads.base import NotApplied
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.tickets import Ticket

Read = Callable[..., dict[str, Any]]
FIELDS = ("key", "found", "value", "version", "partition", "offset", "source")


@pytest.fixture(params=["blocking", "http"])
def read(request: pytest.FixtureRequest, settings: Settings, tmp_path) -> Iterator[Read]:
    """``read(key, after=None, timeout_ms=2000, stale=False)``: the ReadResult fields, or
    ``{"error": "not_applied", "ticket", "applied_seq", "applied_offset"}``."""
    if request.param == "blocking":
        owner, stale = OwnerReader(settings), RedisReader(settings)

        def blocking(key: str, after: Ticket | None = None, timeout_ms: int = 2000,
                     stale_read: bool = False) -> dict[str, Any]:
            try:
                result = (stale.get(key) if stale_read
                          else owner.get(key, after=after, timeout_ms=timeout_ms))
            except NotApplied as exc:
                return {"error": "not_applied", "ticket": str(exc.ticket), **exc.position}
            return result.to_dict()

        try:
            yield blocking
        finally:
            owner.close()
            stale.close()
        return
    servers = Servers(tmp_path)
    try:
        http = servers.client(servers.start(settings))

        def over_http(key: str, after: Ticket | None = None, timeout_ms: int = 2000,
                      stale_read: bool = False) -> dict[str, Any]:
            query = "consistency=stale" if stale_read else f"timeout_ms={timeout_ms}"
            if after is not None:
                query += f"&after={after}"
            answer = http.get(f"/v1/keys/{key}?{query}")
            if answer.status == 504:
                return {k: answer.body[k]
                        for k in ("error", "ticket", "applied_seq", "applied_offset")}
            assert answer.status in (200, 404), answer
            return {k: answer.body[k] for k in FIELDS}

        yield over_http
    finally:
        servers.stop_all()


def the_member(client: redis.Redis, settings: Settings) -> str:
    """The one worker's member id, once it has claimed every partition."""
    keys = Keys(settings.cluster)
    (member,) = client.smembers(keys.members)
    wait_until(lambda: set(client.hvals(keys.owners)) == {member}
               and client.hlen(keys.owners) == settings.partitions, 30,
               message="every partition claimed by the worker")
    return str(member.decode())


def key_apart(settings: Settings, key: str) -> str:
    """A key in another partition than ``key``'s."""
    return next(f"gate:{n}" for n in range(100)
                if partition_for(f"gate:{n}", settings.partitions)
                != partition_for(key, settings.partitions))


def test_source_is_the_owner_or_redis(settings, workers: Workers, redis_client,
                                      read: Read) -> None:
    workers.start()
    member = the_member(redis_client, settings)
    with Producer(settings) as producer:
        ticket = producer.put("skier:812", {"lift": 21})
    fresh = read("skier:812", after=ticket)
    assert (fresh["value"], fresh["version"], fresh["source"]) == ({"lift": 21}, 1,
                                                                     f"owner:{member}")
    assert fresh["offset"] >= 0
    assert read("never-written")["source"] == f"owner:{member}"
    wait_flushed(redis_client, settings, [ticket])
    stale = read("skier:812", stale_read=True)
    assert (stale["value"], stale["source"]) == ({"lift": 21}, "redis")
    assert stale["offset"] == fresh["offset"]


def test_after_a_ticket_of_another_partition_waits_for_its_owner(
        settings, workers: Workers, redis_client, read: Read) -> None:
    gate = key_apart(settings, "counter")
    writes = 50_000
    # Written before any worker runs: the worker starts with all of it to apply.
    with Producer(settings) as producer:
        producer.put(gate, "open")
        futures = [producer.submit("incr", "counter", 1) for _ in range(writes)]
        last = max((f.result(60) for f in futures), key=lambda t: t.seq)
    workers.start()
    member = the_member(redis_client, settings)
    answer = read(gate, after=last, timeout_ms=30_000)
    assert (answer["value"], answer["source"]) == ("open", f"owner:{member}")
    # The counter's owner had applied every write of the ticket before the gate was read.
    assert read("counter")["value"] == writes
    # A write that never comes: refused after the timeout with the position of the
    # ticket's partition (not of the key's), for both clients alike.
    never = Ticket(last.partition, last.producer_id, last.seq + 1000)
    began = time.monotonic()
    late = read(gate, after=never, timeout_ms=300)
    assert 0.25 < time.monotonic() - began < 5
    assert (late["error"], late["ticket"], late["applied_seq"]) == ("not_applied", str(never),
                                                                    last.seq)
