"""Reads from the partition's owner over RabbitMQ RPC with direct reply-to."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pika
import pika.exceptions

from liftline import codec
from liftline.errors import BrokerError, InvalidWrite, NoOwner, Timeout
from liftline.partitioning import partition_for
from liftline.queue.connection import connect_blocking
from liftline.queue.topology import Names
from liftline.reads.base import Reader, ReadResult
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import connect
from liftline.tickets import Ticket

_REPLY_TO = "amq.rabbitmq.reply-to"


class OwnerReader(Reader):
    """Asks the live owner of the key's partition; its memory is the freshest state.

    Not thread-safe: one reader per thread (it holds a pika connection).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = Names(settings.cluster)
        self.keys = Keys(settings.cluster)
        self._redis = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
        self._conn = connect_blocking(settings, name="liftline-reader", attempts=2,
                                      timeout_s=settings.query_timeout_s)
        self._channel = self._conn.channel()
        self._replies: dict[str, dict[str, Any]] = {}
        self._channel.basic_consume(_REPLY_TO, self._on_reply, auto_ack=True)

    def _on_reply(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        try:
            self._replies[props.correlation_id] = codec.unpack(body)
        except Exception:  # a garbled reply is treated like a missing one
            pass

    def owner_of(self, partition: int) -> str:
        """The live member holding ``partition``; NoOwner when there is none."""
        raw = self._redis.hget(self.keys.owners, str(partition))
        owner = "" if raw is None else str(raw.decode())
        if not owner or not self._redis.exists(self.keys.member(owner)):
            raise NoOwner(f"partition {partition} has no live owner (try a stale read)")
        return owner

    def get(self, key: str, *, after: Ticket | None = None,
            timeout_ms: int = 2000) -> ReadResult:
        codec.check_key(key)
        partition = partition_for(key, self.settings.partitions)
        owner = self.owner_of(partition)
        request: dict[str, Any] = {"k": key, "t": timeout_ms if after else 0}
        if after is not None:
            if not 0 <= after.partition < self.settings.partitions:
                raise InvalidWrite(f"ticket partition {after.partition} is out of range")
            request["after"] = [after.partition, after.producer_id, after.seq]
        reply = self._call(owner, request, self.settings.rpc_timeout_s + request["t"] / 1000.0)
        if not reply.get("ok"):
            code = reply.get("code")
            if code == "timeout":
                raise Timeout(
                    f"write {after} not applied within {timeout_ms} ms "
                    f"(partition offset {reply.get('off')}, producer seq {reply.get('seq')})"
                )
            if code == "not_owner":
                raise NoOwner(reply.get("err", "not the owner"))
            raise InvalidWrite(reply.get("err", "bad request"))
        return ReadResult(key, bool(reply["found"]), reply.get("v"), int(reply.get("ver", 0)),
                          partition, int(reply.get("off", -1)), f"owner:{owner}")

    def get_many(self, keys: list[str]) -> dict[str, ReadResult]:
        """Values of many keys from their owners, one request per owner."""
        by_owner: dict[str, list[str]] = {}
        for key in keys:
            codec.check_key(key)
            partition = partition_for(key, self.settings.partitions)
            by_owner.setdefault(self.owner_of(partition), []).append(key)
        out: dict[str, ReadResult] = {}
        for owner, owner_keys in by_owner.items():
            for start in range(0, len(owner_keys), 5000):
                chunk = owner_keys[start:start + 5000]
                reply = self._call(owner, {"ks": chunk}, self.settings.rpc_timeout_s)
                if not reply.get("ok"):
                    raise InvalidWrite(reply.get("err", "bad request"))
                for key, val in zip(chunk, reply["vals"], strict=True):
                    partition = partition_for(key, self.settings.partitions)
                    if val is None:
                        raise NoOwner(f"partition {partition} moved away from {owner}; retry")
                    out[key] = ReadResult(key, bool(val[0]), val[1], int(val[2]), partition, -1,
                                          f"owner:{owner}")
        return out

    def _call(self, owner: str, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        corr = uuid.uuid4().hex
        try:
            self._channel.basic_publish(
                "", self.names.rpc_queue(owner), codec.pack(request),
                properties=pika.BasicProperties(reply_to=_REPLY_TO, correlation_id=corr),
            )
            deadline = time.monotonic() + timeout_s
            while corr not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"owner {owner} did not answer within {timeout_s:.1f}s")
                self._conn.process_data_events(time_limit=min(left, 0.05))
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"read failed: {exc!r}") from exc
        return self._replies.pop(corr)

    def close(self) -> None:
        try:
            if self._conn.is_open:
                self._conn.close()
        finally:
            self._redis.close()
