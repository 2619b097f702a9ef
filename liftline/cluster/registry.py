"""The cluster registry in Redis: members (register, heartbeat with a TTL,
deregister), their reports, and the owners hash.

A member whose heartbeat key expired is out. Every worker computes the same
assignment from the live members (``partitioning.assign``). The owners hash
names the member that last claimed each partition; the claim itself (which also
bumps the partition's epoch, the fence) is ``RedisStore.claim``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import msgpack
import redis

from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import store_error

log = logging.getLogger(__name__)


class Membership:
    """This worker's record in the cluster registry."""

    def __init__(self, client: redis.Redis, settings: Settings, member_id: str) -> None:
        self.client = client
        self.settings = settings
        self.member_id = member_id
        self.keys = Keys(settings.cluster)
        self._next_beat = 0.0
        self._started = time.time()

    def register(self) -> None:
        self.beat({})

    def due(self, now: float) -> bool:
        return now >= self._next_beat

    def beat(self, report: dict[int, Any]) -> None:
        """Refresh the heartbeat (TTL ``member_ttl_s``) with this worker's report."""
        self._next_beat = time.monotonic() + self.settings.heartbeat_s
        key = self.keys.member(self.member_id)
        record = {
            "id": self.member_id, "host": socket.gethostname(), "pid": os.getpid(),
            "started": self._started, "beat": time.time(),
            "replicas": self.settings.replicas,
            "report": msgpack.packb(report, use_bin_type=True),
        }
        try:
            # The record, its expiry and the members set: one round trip, not one
            # transaction (they may sit on different nodes of a Redis Cluster); a
            # member in the set without a record is dropped by whoever reads it.
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, mapping=record)
            pipe.pexpire(key, int(self.settings.member_ttl_s * 1000))
            pipe.sadd(self.keys.members, self.member_id)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)

    def deregister(self) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.keys.member(self.member_id))
            pipe.srem(self.keys.members, self.member_id)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("deregister failed: %s", exc)


def live_members(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    """Members whose heartbeat has not expired, with their last report.

    StoreUnavailable / StoreError when Redis does not answer.
    """
    try:
        return _live_members(client, keys)
    except redis.RedisError as exc:
        raise store_error(exc) from exc


def _live_members(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for raw_id in client.smembers(keys.members):
        member_id = raw_id.decode()
        record = client.hgetall(keys.member(member_id))
        if not record:
            client.srem(keys.members, member_id)
            continue
        fields = {k.decode(): v for k, v in record.items()}
        report = msgpack.unpackb(fields.pop("report", b"\x80"), raw=False, strict_map_key=False)
        out[member_id] = {
            "id": member_id,
            "host": fields["host"].decode(),
            "pid": int(fields["pid"]),
            "beat": float(fields["beat"]),  # the member's clock at its last heartbeat
            "heartbeat_age_s": round(time.time() - float(fields["beat"]), 3),
            "replicas": int(fields.get("replicas", b"1")),
            "partitions": report,
        }
    return out


def owners_of(client: redis.Redis, keys: Keys) -> dict[int, str]:
    """The member that last claimed each partition (it may have died since)."""
    try:
        raw = client.hgetall(keys.owners)
    except redis.RedisError as exc:
        raise store_error(exc) from exc
    return {int(k): v.decode() for k, v in raw.items()}


def current_holders(members: dict[str, dict[str, Any]], partitions: int,
                    owners: dict[int, str] | None = None) -> dict[int, list[str]]:
    """Per partition, ``[primary, standby, …]``: the primary first (``""`` when no
    live member leads it), then the other members that report holding it.

    The primary comes from the owners hash when given: every claim writes it
    atomically, so all workers agree on it at once, whereas a member's report
    lags by up to a heartbeat (two workers acting on each other's stale reports
    would trade primaries back and forth). Standbys are ordered by member id so
    that every worker's view orders them alike.
    """
    out: dict[int, list[str]] = {}
    for p in range(partitions):
        held = sorted(m for m, r in members.items() if p in r["partitions"])
        if owners is not None:
            primary = owners.get(p, "")
            primary = primary if primary in members else ""
        else:
            leaders = sorted((m for m in held
                              if members[m]["partitions"][p].get("role") == "primary"),
                             key=lambda m: -int(members[m]["partitions"][p].get("epoch", 0)))
            primary = leaders[0] if leaders else ""
        out[p] = [primary] + [m for m in held if m != primary]
    return out
