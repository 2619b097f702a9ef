"""Which live member owns a partition, as a reader finds out, cached briefly.

The owners hash names the member that last claimed each partition
(``RedisStore.claim`` writes it); that member counts only while its heartbeat
key lives. A lookup is two Redis round trips: the claimed owners of the
partitions asked, then whether those members are alive.

Sans-I/O: :meth:`OwnerCache.lookup` is a generator that yields the Redis
commands to run (one pipeline per yield, each command a tuple for
``execute_command``) and is sent back their replies, in order. The caller owns
the connection, so the same lookup serves blocking and asyncio readers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from liftline.store.keys import Keys

# Long enough to spare Redis a lookup per read under load, short enough that a
# reader seldom asks a member that just lost the partition (and when it does,
# the owner answers not_owner or its queue is gone, and the reader looks again).
OWNER_CACHE_S = 0.5

Command = tuple[str, ...]
Lookup = Generator[list[Command], list[Any], dict[int, str]]


class OwnerCache:
    """Live owners of partitions, each remembered for ``ttl_s`` after it was looked up."""

    def __init__(self, keys: Keys, *, ttl_s: float = OWNER_CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.ttl_s = ttl_s
        self.clock = clock
        self._known: dict[int, tuple[float, str]] = {}

    def lookup(self, partitions: Iterable[int], *, fresh: bool = False) -> Lookup:
        """The live owner of each of ``partitions``; a partition with none is left out.

        Cached owners younger than ``ttl_s`` are used unless ``fresh``; the
        others are asked of Redis and the answers cached.
        """
        now = self.clock()
        found: dict[int, str] = {}
        wanted: list[int] = []
        for partition in dict.fromkeys(partitions):
            known = self._known.get(partition)
            if known is not None and not fresh and now - known[0] < self.ttl_s:
                found[partition] = known[1]
            else:
                wanted.append(partition)
        if not wanted:
            return found
        (claims,) = yield [("HMGET", self.keys.owners, *(str(p) for p in wanted))]
        claimed = {p: _text(raw) for p, raw in zip(wanted, claims, strict=True) if raw}
        members = sorted(set(claimed.values()))
        alive: set[str] = set()
        if members:
            replies = yield [("EXISTS", self.keys.member(m)) for m in members]
            alive = {m for m, n in zip(members, replies, strict=True) if n}
        for partition in wanted:
            owner = claimed.get(partition)
            if owner in alive:
                assert owner is not None
                self._known[partition] = (now, owner)
                found[partition] = owner
            else:
                self._known.pop(partition, None)
        return found

    def forget(self, partition: int) -> None:
        """Drop the cached owner of ``partition`` (it answered that it does not hold it)."""
        self._known.pop(partition, None)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
