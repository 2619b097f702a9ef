"""Stale reads from Redis: the last flushed value, no owner needed."""

from __future__ import annotations

from liftline import codec
from liftline.errors import InvalidWrite
from liftline.partitioning import partition_for
from liftline.reads.base import Reader, ReadResult
from liftline.settings import Settings
from liftline.store.redis_store import RedisStore, connect
from liftline.tickets import Ticket


class RedisReader(Reader):
    """Reads what the owners last flushed (may lag the owner by a flush interval)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
        self._store = RedisStore(self._client, settings.cluster)

    def get(self, key: str, *, after: Ticket | None = None,
            timeout_ms: int = 2000) -> ReadResult:
        codec.check_key(key)
        if after is not None:
            raise InvalidWrite("stale reads cannot wait for a ticket; use a primary read")
        partition = partition_for(key, self.settings.partitions)
        entry = self._store.read(key, partition)
        state = self._store.state(partition)
        offset = int(state.get("offset", -1))
        if entry is None:
            return ReadResult(key, False, None, 0, partition, offset, "redis")
        return ReadResult(key, True, entry[0], entry[1], partition, offset, "redis")

    def close(self) -> None:
        self._client.close()
