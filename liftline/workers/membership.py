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

    def live_ids(self) -> list[str]:
        """Ids of the members whose heartbeat key has not expired (this one included)."""
        ids = sorted(m.decode() for m in self.client.smembers(self.keys.members))
        pipe = self.client.pipeline(transaction=False)
        for member_id in ids:
            pipe.exists(self.keys.member(member_id))
        alive = pipe.execute()
        gone = [m for m, ok in zip(ids, alive, strict=True) if not ok]
        if gone:
            self.client.srem(self.keys.members, *gone)
        return [m for m, ok in zip(ids, alive, strict=True) if ok]


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
            "partitions": report,
        }
    return out
