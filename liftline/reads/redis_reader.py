"""Stale reads from Redis: the last flushed value, no owner needed."""

from __future__ import annotations

from typing import Any

from liftline.errors import InvalidWrite
from liftline.reads.base import Reader, ReadResult
from liftline.reads.core import ReadCore
from liftline.reads.steps import RedisCall, Step, run, run_redis
from liftline.settings import Settings
from liftline.store.redis_store import connect
from liftline.tickets import Ticket


class RedisReader(Reader):
    """Reads what the owners last flushed (may lag the owner by a flush interval).

    ``source`` is ``"redis"`` and ``offset`` the partition's flushed offset.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.core = ReadCore(settings)
        self._client = connect(settings.redis_url, timeout_s=settings.query_timeout_s)

    def get(self, key: str, *, after: Ticket | None = None,
            timeout_ms: int = 2000) -> ReadResult:
        if after is not None:
            raise InvalidWrite("stale reads cannot wait for a ticket; use a primary read")
        return run(self.core.stale(key), self._execute)

    def get_many(self, keys: list[str]) -> dict[str, ReadResult]:
        return run(self.core.stale_many(keys), self._execute)

    def _execute(self, step: Step) -> Any:
        if not isinstance(step, RedisCall):
            raise TypeError(f"a stale read takes no {type(step).__name__}")
        return run_redis(self._client, step)

    def close(self) -> None:
        self._client.close()
