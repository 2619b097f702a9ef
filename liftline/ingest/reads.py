"""Reads and ticket status for the HTTP service, at each consistency level.

- ``stale``: the value last flushed to Redis (no owner needed).
- ``primary``: the partition's primary answers from memory (RPC).
- ``after=<ticket>``: the primary waits until that write is applied, up to
  ``timeout_ms`` (read-your-writes across the asynchronous acknowledgement).
  When the ticket's partition is not the key's, the ticket's owner is asked
  to wait first, then the key's owner is read.

Ticket status: ``persisted`` when the Redis watermark of its producer covers
it, ``applied`` when the owner's in-memory watermark does, else ``queued``.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import redis.asyncio as aioredis

from liftline import codec
from liftline.errors import InvalidWrite, NoOwner, StoreUnavailable, Timeout
from liftline.ingest.rpc import AsyncRpc
from liftline.partitioning import partition_for
from liftline.queue.topology import Names
from liftline.reads.base import ReadResult
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.tickets import Ticket

OWNER_CACHE_S = 0.5


class NotApplied(Timeout):
    """The awaited write was not applied within the timeout."""

    def __init__(self, ticket: Ticket, position: dict[str, Any]) -> None:
        super().__init__(f"write {ticket} not applied within the timeout")
        self.ticket = ticket
        self.position = position


class AsyncReads:
    """Owner lookups (cached briefly), owner RPC and Redis reads."""

    def __init__(self, settings: Settings, rpc: AsyncRpc, client: aioredis.Redis) -> None:
        self.settings = settings
        self.rpc = rpc
        self.redis = client
        self.keys = Keys(settings.cluster)
        self.names = Names(settings.cluster)
        self._owners: dict[int, tuple[float, str]] = {}

    async def owner_of(self, partition: int, *, fresh: bool = False) -> str:
        cached = self._owners.get(partition)
        now = time.monotonic()
        if cached and not fresh and now - cached[0] < OWNER_CACHE_S:
            return cached[1]
        try:
            raw = await self.redis.hget(self.keys.owners, str(partition))
            alive = raw is not None and await self.redis.exists(self.keys.member(raw.decode()))
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
        if not alive:
            self._owners.pop(partition, None)
            raise NoOwner(f"partition {partition} has no live owner (try consistency=stale)")
        owner = str(raw.decode())
        self._owners[partition] = (now, owner)
        return owner

    async def _ask(self, partition: int, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        """Ask the owner of ``partition``; once more with a fresh lookup if it moved."""
        for attempt in range(2):
            owner = await self.owner_of(partition, fresh=attempt > 0)
            try:
                reply = await self.rpc.call(self.names.rpc_queue(owner), request,
                                            self.settings.rpc_timeout_s + wait_s)
            except NoOwner:
                if attempt:
                    raise
                continue
            if reply.get("code") == "not_owner" and not attempt:
                continue
            return reply
        raise NoOwner(f"partition {partition} is moving between owners; retry")

    async def get(self, key: str, consistency: str = "primary", after: Ticket | None = None,
                  timeout_ms: int = 2000) -> ReadResult:
        codec.check_key(key)
        partition = partition_for(key, self.settings.partitions)
        if consistency == "stale":
            return await self._stale(key, partition)
        request: dict[str, Any] = {"k": key, "t": 0}
        if after is not None:
            if after.partition == partition:
                request["after"] = [after.partition, after.producer_id, after.seq]
                request["t"] = timeout_ms
            else:
                await self.wait_applied(after, timeout_ms)
        reply = await self._ask(partition, request, request["t"] / 1000.0)
        if not reply.get("ok"):
            if reply.get("code") == "timeout" and after is not None:
                raise NotApplied(after, {"applied_seq": reply.get("seq"),
                                         "applied_offset": reply.get("off")})
            if reply.get("code") == "not_owner":
                raise NoOwner(reply.get("err", "not the owner"))
            raise InvalidWrite(reply.get("err", "bad request"))
        return ReadResult(key, bool(reply["found"]), reply.get("v"), int(reply.get("ver", 0)),
                          partition, int(reply.get("off", -1)), "primary")

    async def get_many(self, keys: list[str], consistency: str = "primary"
                       ) -> dict[str, ReadResult]:
        """Many keys in one request per owner (or one Redis pipeline when stale)."""
        parts = {k: partition_for(k, self.settings.partitions) for k in keys}
        if consistency == "stale":
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hget(self.keys.data(parts[key]), key)
            raws = await pipe.execute()
            return {k: self._from_redis(k, parts[k], raw, -1) for k, raw in zip(keys, raws,
                                                                                 strict=True)}
        by_owner: dict[str, list[str]] = {}
        for key in keys:
            by_owner.setdefault(await self.owner_of(parts[key]), []).append(key)
        out: dict[str, ReadResult] = {}
        for owner, chunk in by_owner.items():
            reply = await self.rpc.call(self.names.rpc_queue(owner), {"ks": chunk},
                                        self.settings.rpc_timeout_s)
            if not reply.get("ok"):
                raise NoOwner(reply.get("err", "owner refused the read"))
            for key, val in zip(chunk, reply["vals"], strict=True):
                if val is None:
                    self._owners.clear()
                    raise NoOwner(f"partition {parts[key]} moved away from {owner}; retry")
                out[key] = ReadResult(key, bool(val[0]), val[1], int(val[2]), parts[key], -1,
                                      "primary")
        return out

    async def wait_applied(self, ticket: Ticket, timeout_ms: int) -> dict[str, Any]:
        """Wait until the ticket's owner applied it; NotApplied with the position otherwise."""
        reply = await self._ask(ticket.partition, {
            "st": [ticket.partition, ticket.producer_id, ticket.seq], "t": timeout_ms,
        }, timeout_ms / 1000.0)
        if not reply.get("ok"):
            raise NoOwner(reply.get("err", "not the owner"))
        if not reply.get("applied"):
            raise NotApplied(ticket, {"applied_seq": reply.get("seq"),
                                      "applied_offset": reply.get("off")})
        return reply

    async def status(self, ticket: Ticket) -> dict[str, Any]:
        """``{"status": queued|applied|persisted, "persisted_seq", "applied_seq"}``."""
        try:
            raw = await self.redis.hget(self.keys.watermarks(ticket.partition), ticket.producer_id)
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
        persisted = int(raw or 0)
        out: dict[str, Any] = {"ticket": str(ticket), "partition": ticket.partition,
                               "persisted_seq": persisted, "applied_seq": None}
        if persisted >= ticket.seq:
            return {**out, "status": "persisted"}
        try:
            reply = await self.wait_applied(ticket, 0)
            applied = True
        except NotApplied as exc:
            reply, applied = exc.position, False
        except (NoOwner, Timeout):
            return {**out, "status": "queued", "owner": None}
        out["applied_seq"] = reply.get("seq", reply.get("applied_seq"))
        return {**out, "status": "applied" if applied else "queued"}

    async def _stale(self, key: str, partition: int) -> ReadResult:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hget(self.keys.data(partition), key)
            pipe.hget(self.keys.state(partition), "offset")
            raw, offset = await pipe.execute()
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
        return self._from_redis(key, partition, raw, -1 if offset is None else int(offset))

    @staticmethod
    def _from_redis(key: str, partition: int, raw: bytes | None, offset: int) -> ReadResult:
        if raw is None:
            return ReadResult(key, False, None, 0, partition, offset, "redis")
        value, version = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        return ReadResult(key, True, value, version, partition, offset, "redis")
