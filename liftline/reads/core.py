"""The read client, without I/O of its own: one core for the blocking and the asyncio readers.

Each operation (:meth:`ReadCore.get`, ``get_many``, ``wait_applied``,
``status``, ``stale``, ``stale_many``) is a generator of I/O steps
(:mod:`liftline.reads.steps`: RedisCall, OwnerCall) whose return value is the
operation's result; ``steps.run`` / ``steps.arun`` drive it over a blocking or
an asyncio transport.

The owner of a partition comes from :class:`~liftline.cluster.owners.OwnerCache`
(cached 0.5 s). When that owner answers not_owner, when its queue is gone or
when it no longer holds some keys of a get-many, the core looks the owner up
afresh and asks once more; then it gives up with NoOwner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from liftline import codec
from liftline.cluster.owners import OwnerCache
from liftline.errors import (
    BrokerError,
    InvalidMessage,
    InvalidWrite,
    LiftlineError,
    NoOwner,
    StoreError,
    Timeout,
)
from liftline.partitioning import partition_for
from liftline.queue.topology import Names
from liftline.reads import protocol
from liftline.reads.base import NotApplied, ReadResult, TicketStatus
from liftline.reads.protocol import (
    ErrorReply,
    GetManyRequest,
    GetRequest,
    Reply,
    Request,
    StatusReply,
    StatusRequest,
    ValueReply,
    ValuesReply,
)
from liftline.reads.steps import Gone, OwnerCall, RedisCall, Steps, via_redis
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.tickets import Ticket, id_created

CHUNK_KEYS = 5000  # keys per get-many request: well under the owner's limit


class ReadCore:
    """Reads and ticket status of one cluster; keeps only the owner cache between calls.

    Not thread-safe (the cache): one per reader.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.partitions = settings.partitions
        self.rpc_timeout_s = settings.rpc_timeout_s
        self.keys = Keys(settings.cluster)
        self.names = Names(settings.cluster)
        self.owners = OwnerCache(self.keys, clock=clock)

    def partition_of(self, key: str) -> int:
        """The partition of ``key``; InvalidWrite for a malformed key."""
        return partition_for(codec.check_key(key), self.partitions)

    # -- owner reads -----------------------------------------------------------
    def get(self, key: str, after: Ticket | None = None, timeout_ms: int = 2000
            ) -> Steps[ReadResult]:
        """``key`` as its owner holds it; with ``after``, once that write is applied.

        A ticket of another partition is first awaited at its own owner, then
        the key's owner is read. Raises NotApplied (with the owner's position)
        when the write is not applied within ``timeout_ms``, NoOwner, InvalidWrite.
        """
        partition = self.partition_of(key)
        wait_ms = max(0, timeout_ms)
        request = GetRequest(key)
        if after is not None:
            self._check_ticket(after)
            if after.partition == partition:
                request = GetRequest(key, after, wait_ms)
            else:
                yield from self.wait_applied(after, wait_ms)
        owner, reply = yield from self._ask(partition, request, request.timeout_ms)
        if not isinstance(reply, ValueReply):
            raise _failure(owner, reply, after, wait_ms)
        return ReadResult(key, reply.found, reply.value, reply.version, partition, reply.offset,
                          f"owner:{owner}")

    def get_many(self, keys: Iterable[str]) -> Steps[dict[str, ReadResult]]:
        """Each of ``keys`` from its owner: one request per owner and 5000 keys."""
        parts = {key: self.partition_of(key) for key in keys}
        out: dict[str, ReadResult] = {}
        pending = list(parts)
        for attempt in range(2):
            owners = yield from via_redis(
                self.owners.lookup((parts[k] for k in pending), fresh=attempt > 0))
            for key in pending:
                if parts[key] not in owners:
                    raise _no_owner(parts[key])
            by_owner: dict[str, list[str]] = {}
            for key in pending:
                by_owner.setdefault(owners[parts[key]], []).append(key)
            again: list[str] = []
            for owner, owner_keys in by_owner.items():
                for start in range(0, len(owner_keys), CHUNK_KEYS):
                    chunk = owner_keys[start:start + CHUNK_KEYS]
                    reply = yield from self._call(owner, GetManyRequest(tuple(chunk)), 0)
                    if reply is None or isinstance(reply, ErrorReply) \
                            and reply.code == "not_owner":
                        again += chunk
                        continue
                    if not isinstance(reply, ValuesReply) or len(reply.entries) != len(chunk):
                        raise _failure(owner, reply, None, 0)
                    for key, entry in zip(chunk, reply.entries, strict=True):
                        if entry is None:
                            again.append(key)
                        else:
                            out[key] = ReadResult(key, entry.found, entry.value, entry.version,
                                                  parts[key], -1, f"owner:{owner}")
            for key in again:
                self.owners.forget(parts[key])
            if not again:
                return out
            pending = again
        raise NoOwner(f"partition {parts[pending[0]]} is moving between owners; retry")

    def wait_applied(self, ticket: Ticket, timeout_ms: int) -> Steps[StatusReply]:
        """Once the ticket's owner has applied it, its answer; NotApplied after ``timeout_ms``."""
        self._check_ticket(ticket)
        wait_ms = max(0, timeout_ms)
        owner, reply = yield from self._ask(ticket.partition, StatusRequest(ticket, wait_ms),
                                            wait_ms)
        if not isinstance(reply, StatusReply):
            raise _failure(owner, reply, ticket, wait_ms)
        if not reply.applied:
            raise NotApplied(ticket, reply.seq, reply.offset, wait_ms)
        return reply

    def persisted_seq(self, ticket: Ticket) -> Steps[int]:
        """The ticket's producer's watermark flushed to Redis for its partition."""
        self._check_ticket(ticket)
        (raw,) = yield RedisCall((("HGET", self.keys.watermarks(ticket.partition),
                                   ticket.producer_id),))
        return int(raw or 0)

    def status(self, ticket: Ticket) -> Steps[TicketStatus]:
        """``persisted`` when Redis' watermark covers the ticket, else ``expired`` when
        its producer id is past the partition's horizon (in Redis or at the owner),
        else ``applied`` when its owner's watermark covers it, else ``queued`` (no
        live owner counts as queued)."""
        self._check_ticket(ticket)
        raw, horizon, gaps = yield RedisCall((
            ("HGET", self.keys.watermarks(ticket.partition), ticket.producer_id),
            ("HGET", self.keys.state(ticket.partition), "horizon"),
            ("HGET", self.keys.gaps(ticket.partition), ticket.producer_id)))
        persisted = int(raw or 0)
        # A seq in a gap of its producer is below the watermark but not in the stream.
        missing = gaps is not None and any(lo <= ticket.seq <= hi for lo, hi in codec.unpack(gaps))
        if persisted >= ticket.seq and not missing:
            return TicketStatus(ticket, "persisted", persisted, None)
        created = id_created(ticket.producer_id)
        if created is not None and created < int(horizon or 0):
            return TicketStatus(ticket, "expired", persisted, None)
        try:
            reply = yield from self.wait_applied(ticket, 0)
        except NotApplied as exc:
            return TicketStatus(ticket, "queued", persisted, exc.applied_seq)
        except (NoOwner, Timeout):
            return TicketStatus(ticket, "queued", persisted, None)
        if reply.expired:
            return TicketStatus(ticket, "expired", persisted, None)
        return TicketStatus(ticket, "applied", persisted, reply.seq)

    # -- stale reads -----------------------------------------------------------
    def stale(self, key: str) -> Steps[ReadResult]:
        """``key`` as last flushed to Redis, with the partition's flushed offset."""
        partition = self.partition_of(key)
        raw, offset = yield RedisCall((("HGET", self.keys.data(partition), key),
                                       ("HGET", self.keys.state(partition), "offset")))
        return _flushed(key, partition, raw, offset)

    def stale_many(self, keys: Iterable[str]) -> Steps[dict[str, ReadResult]]:
        """Each of ``keys`` as last flushed to Redis, in one pipeline."""
        parts = {key: self.partition_of(key) for key in keys}
        held = sorted(set(parts.values()))
        replies = yield RedisCall(
            tuple(("HGET", self.keys.data(p), k) for k, p in parts.items())
            + tuple(("HGET", self.keys.state(p), "offset") for p in held))
        offsets = dict(zip(held, replies[len(parts):], strict=True))
        return {k: _flushed(k, p, raw, offsets[p])
                for (k, p), raw in zip(parts.items(), replies[:len(parts)], strict=True)}

    # -- asking owners ---------------------------------------------------------
    def _ask(self, partition: int, request: Request, wait_ms: int) -> Steps[tuple[str, Reply]]:
        """(owner, reply) from the owner of ``partition``, asked once more after a fresh
        lookup when it answered not_owner or its queue was gone."""
        for attempt in range(2):
            found = yield from via_redis(self.owners.lookup((partition,), fresh=attempt > 0))
            if partition not in found:
                raise _no_owner(partition)
            owner = found[partition]
            reply = yield from self._call(owner, request, wait_ms)
            if reply is not None and not (isinstance(reply, ErrorReply)
                                          and reply.code == "not_owner"):
                return owner, reply
            self.owners.forget(partition)
        raise NoOwner(f"partition {partition} is moving between owners; retry")

    def _call(self, owner: str, request: Request, wait_ms: int) -> Steps[Reply | None]:
        """The decoded reply of ``owner``, or None when its queue is gone."""
        queue = self.names.rpc_queue(owner)
        raw = yield OwnerCall(queue, request, self.rpc_timeout_s + wait_ms / 1000.0)
        if isinstance(raw, Gone):
            return None
        try:
            return protocol.decode_reply(raw)
        except InvalidMessage as exc:
            raise BrokerError(f"garbled reply from {queue}: {exc}") from exc

    def _check_ticket(self, ticket: Ticket) -> None:
        if not 0 <= ticket.partition < self.partitions:
            raise InvalidWrite(f"ticket partition {ticket.partition} is out of range "
                               f"(the cluster has {self.partitions})")


def _no_owner(partition: int) -> NoOwner:
    return NoOwner(f"partition {partition} has no live owner; a stale read (from Redis) "
                   "still answers")


def _failure(owner: str, reply: Reply, ticket: Ticket | None, wait_ms: int) -> LiftlineError:
    """The error for a reply that is not the answer asked for."""
    if isinstance(reply, ErrorReply):
        if reply.code == "timeout" and ticket is not None:
            return NotApplied(ticket, reply.seq, reply.offset, wait_ms)
        if reply.code == "not_owner":
            return NoOwner(reply.message or f"{owner} does not hold the partition")
        if reply.code == "bad_request":
            return InvalidWrite(reply.message or "bad request")
    return BrokerError(f"owner {owner} answered with an unexpected {type(reply).__name__}")


def _flushed(key: str, partition: int, raw: Any, offset: Any) -> ReadResult:
    position = -1 if offset is None else int(offset)
    if raw is None:
        return ReadResult(key, False, None, 0, partition, position, "redis")
    try:
        value, version = codec.unpack(raw)
    except (InvalidMessage, TypeError, ValueError) as exc:
        raise StoreError(f"key {key!r} in Redis is not a [value, version] pair") from exc
    return ReadResult(key, True, value, int(version), partition, position, "redis")
