"""Worker membership in Redis: register, heartbeat with a TTL, deregister.

A member whose heartbeat key expired is out. Every worker computes the same
assignment from the live member ids (``partitioning.assign``).
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
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, mapping=record)
            pipe.pexpire(key, int(self.settings.member_ttl_s * 1000))
            pipe.sadd(self.keys.members, self.member_id)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)

    def deregister(self) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.keys.member(self.member_id))
            pipe.srem(self.keys.members, self.member_id)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("deregister failed: %s", exc)


def live_members(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    """Members whose heartbeat has not expired, with their last report."""
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
            "heartbeat_age_s": round(time.time() - float(fields["beat"]), 3),
            "replicas": int(fields.get("replicas", b"1")),
            "partitions": report,
        }
    return out


def current_holders(members: dict[str, dict[str, Any]], partitions: int) -> dict[int, list[str]]:
    """Per partition, the members holding it: the primary first, then the standbys.

    The standbys' order must be the same in every worker's view, so it is by
    member id, not by applied offset (which moves between two heartbeats);
    ``assign`` then orders them by rendezvous score.
    """
    out: dict[int, list[str]] = {}
    for p in range(partitions):
        held = [(m, r["partitions"][p]) for m, r in members.items() if p in r["partitions"]]
        # Of two members that both say "primary" (one was superseded and has not
        # noticed yet), the one with the newer epoch leads.
        held.sort(key=lambda item: (item[1].get("role") != "primary",
                                    -int(item[1].get("epoch", 0)), item[0]))
        out[p] = [m for m, _ in held]
    return out
