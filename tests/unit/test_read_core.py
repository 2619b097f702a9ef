"""liftline.reads.core driven by a scripted fake transport: owner lookups and their
cache, the one retry, NoOwner, NotApplied with the owner's position, ``after``
across partitions, get-many per owner, ticket status and stale reads.

The fake owners answer through the real ReadServer over in-memory stores, so
every request and reply crosses the real protocol encoding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from liftline import codec
from liftline.errors import BrokerError, InvalidWrite, NoOwner, Timeout
from liftline.partitioning import partition_for
from liftline.reads.base import NotApplied
from liftline.reads.core import ReadCore
from liftline.reads.protocol import (
    ErrorReply,
    GetManyRequest,
    GetRequest,
    Reply,
    Request,
    StatusRequest,
    ValuesReply,
    decode_request,
    encode_reply,
)
from liftline.reads.steps import GONE, Gone, OwnerCall, RedisCall, Step, run
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.memory import PartitionStore
from liftline.tickets import Ticket
from liftline.workers.rpc import ReadServer

P = 8
SETTINGS = Settings.from_env({}, cluster="t", partitions=P, rpc_timeout_s=5.0)
KEYS = Keys("t")


def key_in(partition: int, n: int = 0) -> str:
    """The ``n``-th key ``k<i>`` that lands in ``partition``."""
    found = (f"k{i}" for i in range(100_000) if partition_for(f"k{i}", P) == partition)
    for _ in range(n):
        next(found)
    return next(found)


Handler = Callable[[Request], Reply | Gone]


class Member:
    """A fake worker: the partitions it holds, answered by a real ReadServer."""

    def __init__(self, *partitions: int) -> None:
        self.stores = {p: PartitionStore(p) for p in partitions}
        self.server = ReadServer(P, self.stores.get)

    def write(self, key: str, value: Any, producer: str = "prod", seq: int | None = None
              ) -> None:
        """Apply ``set key value`` as the producer's write ``seq`` (default: its next)."""
        store = self.stores[partition_for(key, P)]
        seq = store.watermarks.get(producer, 0) + 1 if seq is None else seq
        assert store.apply_batch(store.applied_offset + 1, producer, seq,
                                 [["set", key, value]]) == 1

    def __call__(self, request: Request) -> Reply | Gone:
        if isinstance(request, GetManyRequest):
            return self.server.many(request)
        # final: a fake owner never waits; a write not applied yet is a timeout at once.
        reply = self.server.answer(request, final=True)
        assert reply is not None
        return reply


class Cluster:
    """Redis (owners hash, heartbeats, hashes) and owners' RPC queues, all in memory."""

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}
        self.alive: set[str] = set()
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.members: dict[str, Handler] = {}
        self.steps: list[Step] = []
        self.now = 100.0

    def join(self, name: str, member: Handler, *partitions: int) -> None:
        self.members[name] = member
        self.alive.add(name)
        for p in partitions:
            self.owners[p] = name

    def execute(self, step: Step) -> Any:
        self.steps.append(step)
        if isinstance(step, RedisCall):
            return [self._redis(*command) for command in step.commands]
        member = step.queue.rpartition(".rpc.")[2]
        handler = self.members.get(member)
        if handler is None:
            return GONE
        reply = handler(decode_request(step.body))
        return reply if isinstance(reply, Gone) else encode_reply(reply)

    def _redis(self, name: str, *args: str) -> Any:
        if name == "HMGET":
            assert args[0] == KEYS.owners
            return [None if int(p) not in self.owners else self.owners[int(p)].encode()
                    for p in args[1:]]
        if name == "EXISTS":
            return int(any(args[0] == KEYS.member(m) for m in self.alive))
        assert name == "HGET"
        return self.hashes.get(args[0], {}).get(args[1])

    def requests(self) -> list[tuple[str, Request]]:
        """(member, request) of every owner call so far."""
        return [(s.queue.rpartition(".rpc.")[2], s.request) for s in self.steps
                if isinstance(s, OwnerCall)]

    def lookups(self) -> int:
        return sum(1 for s in self.steps if isinstance(s, RedisCall)
                   and s.commands[0][0] == "HMGET")


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
def core(cluster: Cluster) -> ReadCore:
    return ReadCore(SETTINGS, clock=lambda: cluster.now)


def do(cluster: Cluster, steps: Any) -> Any:
    return run(steps, cluster.execute)


# -- get and the owner lookup --------------------------------------------------
def test_a_read_is_answered_by_the_owner_and_says_who(cluster: Cluster, core: ReadCore) -> None:
    a = Member(2)
    a.write(key_in(2), {"lift": 21})
    cluster.join("a", a, 2)
    result = do(cluster, core.get(key_in(2)))
    assert (result.found, result.value, result.version, result.partition, result.offset,
            result.source) == (True, {"lift": 21}, 1, 2, 0, "owner:a")
    absent = do(cluster, core.get(key_in(2, 1)))
    assert (absent.found, absent.value, absent.source) == (False, None, "owner:a")


def test_owners_are_cached_half_a_second(cluster: Cluster, core: ReadCore) -> None:
    cluster.join("a", Member(2), 2)
    for _ in range(3):
        do(cluster, core.get(key_in(2)))
    assert cluster.lookups() == 1
    cluster.now += 0.49
    do(cluster, core.get(key_in(2)))
    assert cluster.lookups() == 1
    cluster.now += 0.02
    do(cluster, core.get(key_in(2)))
    assert cluster.lookups() == 2


class MovesAway:
    """An owner that just lost its partitions to ``successor``: answers ``not_owner``
    (or its queue is gone) and hands the owners hash over."""

    def __init__(self, cluster: Cluster, successor: str, gone: bool = False) -> None:
        self.cluster, self.successor, self.gone = cluster, successor, gone
        self.asked = 0

    def __call__(self, request: Request) -> Reply | Gone:
        self.asked += 1
        for p, owner in list(self.cluster.owners.items()):
            if owner != self.successor:
                self.cluster.owners[p] = self.successor
        if self.gone:
            return GONE
        if isinstance(request, GetManyRequest):
            return ValuesReply(tuple(None for _ in request.keys))
        return ErrorReply("not_owner", "partition is not held here", 2)


@pytest.mark.parametrize("gone", [False, True], ids=["not_owner", "queue_gone"])
def test_an_owner_that_moved_costs_one_retry_with_a_fresh_lookup(
        cluster: Cluster, core: ReadCore, gone: bool) -> None:
    b = Member(2)
    b.write(key_in(2), "fresh")
    cluster.join("a", Member(2), 2)
    cluster.join("b", b)
    do(cluster, core.get(key_in(2, 1)))  # the cache says a holds partition 2
    cluster.members["a"] = MovesAway(cluster, "b", gone)
    cluster.steps.clear()
    result = do(cluster, core.get(key_in(2)))
    assert (result.value, result.source) == ("fresh", "owner:b")
    assert [m for m, _ in cluster.requests()] == ["a", "b"]
    assert cluster.lookups() == 1  # the first ask came from the cache, the retry did not


def test_an_owner_moving_twice_gives_up_with_no_owner(cluster: Cluster, core: ReadCore) -> None:
    cluster.join("a", MovesAway(cluster, "b"), 2)
    cluster.join("b", MovesAway(cluster, "a"))
    with pytest.raises(NoOwner, match="moving between owners"):
        do(cluster, core.get(key_in(2)))
    assert [m for m, _ in cluster.requests()] == ["a", "b"]


def test_no_live_owner_is_no_owner_without_asking_anyone(cluster: Cluster,
                                                         core: ReadCore) -> None:
    with pytest.raises(NoOwner, match="partition 2 has no live owner"):
        do(cluster, core.get(key_in(2)))  # never claimed
    cluster.join("a", Member(2), 2)
    cluster.alive.clear()  # claimed, but its heartbeat expired
    with pytest.raises(NoOwner, match="partition 2 has no live owner"):
        do(cluster, core.get(key_in(2)))
    assert cluster.requests() == []


def test_no_answer_within_the_timeout_is_a_timeout(cluster: Cluster, core: ReadCore) -> None:
    cluster.join("a", Member(2), 2)

    def silent(step: Step) -> Any:
        if isinstance(step, OwnerCall):
            raise Timeout(f"{step.queue} did not answer within {step.timeout_s}s")
        return cluster.execute(step)

    with pytest.raises(Timeout, match="did not answer within 5.0s"):
        run(core.get(key_in(2)), silent)


def test_refused_and_garbled_replies(cluster: Cluster, core: ReadCore) -> None:
    cluster.join("a", lambda request: ErrorReply("bad_request", "k: key must not be empty"), 2)
    with pytest.raises(InvalidWrite, match="key must not be empty"):
        do(cluster, core.get(key_in(2)))
    cluster.members["a"] = lambda request: ValuesReply(())
    with pytest.raises(BrokerError, match="unexpected ValuesReply"):
        do(cluster, core.get(key_in(2)))

    def garbled(step: Step) -> Any:
        return b"\xc1" if isinstance(step, OwnerCall) else cluster.execute(step)

    with pytest.raises(BrokerError, match="garbled reply from liftline.t.rpc.a"):
        run(core.get(key_in(2)), garbled)


def test_bad_keys_and_tickets_are_refused_before_any_io(cluster: Cluster,
                                                        core: ReadCore) -> None:
    with pytest.raises(InvalidWrite, match="key must not be empty"):
        do(cluster, core.get(""))
    with pytest.raises(InvalidWrite, match="ticket partition 8 is out of range"):
        do(cluster, core.get("k", Ticket(P, "prod", 1)))
    with pytest.raises(InvalidWrite, match="key must be a string"):
        do(cluster, core.get_many(["a", 3]))
    assert cluster.steps == []


# -- after -----------------------------------------------------------------------
def test_after_in_the_same_partition_waits_at_the_owner(cluster: Cluster,
                                                        core: ReadCore) -> None:
    a = Member(2)
    a.write(key_in(2), "v", seq=3)
    cluster.join("a", a, 2)
    result = do(cluster, core.get(key_in(2), Ticket(2, "prod", 3), timeout_ms=800))
    assert (result.value, result.source) == ("v", "owner:a")
    ((member, request),) = cluster.requests()
    assert request == GetRequest(key_in(2), Ticket(2, "prod", 3), 800)
    call = next(s for s in cluster.steps if isinstance(s, OwnerCall))
    assert call.timeout_s == pytest.approx(5.8)  # rpc_timeout_s plus the wait


def test_a_timeout_reply_is_not_applied_with_the_owners_position(cluster: Cluster,
                                                                 core: ReadCore) -> None:
    a = Member(2)
    a.write(key_in(2), "v", seq=3)
    cluster.join("a", a, 2)
    late = Ticket(2, "prod", 9)
    with pytest.raises(NotApplied) as caught:
        do(cluster, core.get(key_in(2), late, timeout_ms=300))
    assert caught.value.ticket == late
    assert caught.value.position == {"applied_seq": 3, "applied_offset": 0}
    assert "not applied within 300 ms" in str(caught.value)
    assert isinstance(caught.value, Timeout)


def test_after_of_another_partition_waits_at_its_owner_then_reads_the_keys(
        cluster: Cluster, core: ReadCore) -> None:
    a, b = Member(2), Member(5)
    a.write(key_in(2), "gate")
    b.write(key_in(5), 7, producer="other", seq=4)
    cluster.join("a", a, 2)
    cluster.join("b", b, 5)
    ticket = Ticket(5, "other", 4)
    result = do(cluster, core.get(key_in(2), ticket, timeout_ms=1000))
    assert (result.value, result.source) == ("gate", "owner:a")
    assert cluster.requests() == [("b", StatusRequest(ticket, 1000)), ("a", GetRequest(key_in(2)))]
    # Not applied there: NotApplied with that owner's position, and the key is not read.
    cluster.steps.clear()
    with pytest.raises(NotApplied) as caught:
        do(cluster, core.get(key_in(2), Ticket(5, "other", 6), timeout_ms=1000))
    assert caught.value.position == {"applied_seq": 4, "applied_offset": 0}
    assert [m for m, _ in cluster.requests()] == ["b"]


# -- get_many --------------------------------------------------------------------
def test_get_many_asks_each_owner_once_per_5000_keys(cluster: Cluster, core: ReadCore) -> None:
    a, b = Member(0, 1, 2, 3), Member(4, 5, 6, 7)
    keys = [f"key:{n}" for n in range(12_000)]
    for n, key in enumerate(keys[:100]):
        (a if partition_for(key, P) < 4 else b).write(key, n)
    cluster.join("a", a, 0, 1, 2, 3)
    cluster.join("b", b, 4, 5, 6, 7)
    results = do(cluster, core.get_many(keys))
    assert {k: r.value for k, r in results.items() if r.found} == {
        k: n for n, k in enumerate(keys[:100])}
    assert set(results) == set(keys)
    assert all(r.source == ("owner:a" if r.partition < 4 else "owner:b")
               for r in results.values())
    sizes = {m: [] for m in "ab"}
    for member, request in cluster.requests():
        assert isinstance(request, GetManyRequest)
        sizes[member].append(len(request.keys))
    at_a = sum(1 for k in keys if partition_for(k, P) < 4)
    assert sum(sizes["a"]) == at_a and sum(sizes["b"]) == len(keys) - at_a
    assert all(len(s) == -(-sum(s) // 5000) and max(s) <= 5000 for s in sizes.values())
    assert cluster.lookups() == 1


def test_get_many_retries_the_keys_of_a_partition_that_moved(cluster: Cluster,
                                                            core: ReadCore) -> None:
    old, new = Member(2), Member(2, 5)
    new.write(key_in(2), "moved")
    new.write(key_in(5), "stayed")
    cluster.join("old", old, 2)
    cluster.join("new", new, 5)
    do(cluster, core.get(key_in(2, 3)))  # the cache says "old" holds partition 2
    old.stores.clear()  # it lost the partition: its answers hold None for those keys
    cluster.owners[2] = "new"
    cluster.steps.clear()
    results = do(cluster, core.get_many([key_in(2), key_in(5)]))
    assert {k: (r.value, r.source) for k, r in results.items()} == {
        key_in(2): ("moved", "owner:new"), key_in(5): ("stayed", "owner:new")}
    assert [(m, getattr(r, "keys", None)) for m, r in cluster.requests()] == [
        ("old", (key_in(2),)), ("new", (key_in(5),)), ("new", (key_in(2),))]


def test_get_many_of_a_partition_without_owner_is_no_owner(cluster: Cluster,
                                                           core: ReadCore) -> None:
    cluster.join("a", Member(2), 2)
    with pytest.raises(NoOwner, match="partition 5 has no live owner"):
        do(cluster, core.get_many([key_in(2), key_in(5)]))
    assert cluster.requests() == []
    assert do(cluster, core.get_many([])) == {}


# -- status ------------------------------------------------------------------------
def test_status_persisted_applied_queued(cluster: Cluster, core: ReadCore) -> None:
    a = Member(2)
    a.write(key_in(2), "v", seq=5)
    ticket = Ticket(2, "prod", 5)
    # No live owner and nothing flushed: queued, nobody to say how far it got.
    assert do(cluster, core.status(ticket)).to_dict() == {
        "ticket": "2.prod.5", "partition": 2, "status": "queued", "persisted_seq": 0,
        "applied_seq": None}
    cluster.join("a", a, 2)
    assert do(cluster, core.status(ticket)).to_dict()["status"] == "applied"
    later = do(cluster, core.status(Ticket(2, "prod", 6)))
    assert (later.status, later.applied_seq) == ("queued", 5)
    cluster.hashes[KEYS.watermarks(2)] = {"prod": b"5"}
    cluster.steps.clear()
    done = do(cluster, core.status(ticket))
    assert (done.status, done.persisted_seq) == ("persisted", 5)
    assert cluster.requests() == []  # Redis answered; the owner was not asked


def test_a_ticket_in_a_gap_of_its_producer_is_not_persisted(cluster: Cluster,
                                                           core: ReadCore) -> None:
    # Seqs 3-4 never reached the stream (refused, or lost): the watermark passed them.
    cluster.hashes[KEYS.watermarks(2)] = {"prod": b"5"}
    cluster.hashes[KEYS.gaps(2)] = {"prod": codec.pack([[3, 4]])}
    assert do(cluster, core.status(Ticket(2, "prod", 4))).status == "queued"
    assert do(cluster, core.status(Ticket(2, "prod", 5))).status == "persisted"


def test_status_asks_without_waiting_and_an_owner_that_times_out_is_queued(
        cluster: Cluster, core: ReadCore) -> None:
    cluster.join("a", Member(2), 2)
    ticket = Ticket(2, "prod", 1)
    assert do(cluster, core.status(ticket)).status == "queued"
    assert cluster.requests() == [("a", StatusRequest(ticket, 0))]

    def silent(step: Step) -> Any:
        if isinstance(step, OwnerCall):
            raise Timeout("no answer")
        return cluster.execute(step)

    assert run(core.status(ticket), silent).status == "queued"


# -- stale reads -------------------------------------------------------------------
def test_stale_reads_are_what_redis_holds_with_the_flushed_offset(cluster: Cluster,
                                                                  core: ReadCore) -> None:
    one, two, three = key_in(2), key_in(2, 1), key_in(5)
    cluster.hashes[KEYS.data(2)] = {one: msgpack.packb([{"lift": 21}, 3])}
    cluster.hashes[KEYS.state(2)] = {"offset": b"41"}
    result = do(cluster, core.stale(one))
    assert (result.found, result.value, result.version, result.offset, result.source) == (
        True, {"lift": 21}, 3, 41, "redis")
    absent = do(cluster, core.stale(two))
    assert (absent.found, absent.offset, absent.source) == (False, 41, "redis")
    many = do(cluster, core.stale_many([one, two, three]))
    assert {k: (r.found, r.value, r.offset) for k, r in many.items()} == {
        one: (True, {"lift": 21}, 41), two: (False, None, 41), three: (False, None, -1)}
    assert sum(1 for s in cluster.steps if isinstance(s, RedisCall)) == 3  # one pipeline each
    assert cluster.requests() == []
