"""The ops the scenarios write: deterministic, generated before timing where it matters."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

Op = tuple[str, str, Any]

HOT_KEYS = 100_000
INCR_SHARE = 0.8


def mixed_ops(count: int, *, seed: int = 217, keys: int = HOT_KEYS,
              incr_share: float = INCR_SHARE) -> list[Op]:
    """``count`` writes: ``incr_share`` increments by 1 over ``keys`` counter keys, the
    rest ``set`` of a small dict (a lift ride: lift, minute, sequence number) over ``keys``
    other keys. The two key sets are disjoint: an incr on a key holding a dict would be
    refused (a dead letter in liftline, an error in Redis)."""
    rng = random.Random(seed)
    rand, randrange = rng.random, rng.randrange
    out: list[Op] = []
    append = out.append
    for i in range(count):
        if rand() < incr_share:
            append(("incr", f"vert:{randrange(keys)}", 1))
        else:
            append(("set", f"ride:{randrange(keys)}", {"lift": i % 31, "minute": i % 600,
                                                        "n": i}))
    return out


def backlog_ops(count: int, *, keyspace: int = 1_000_000, seed: int = 812) -> Iterator[Op]:
    """``count`` writes over ``keyspace`` distinct keys, walked in order so that the first
    ``min(count, keyspace)`` writes each touch a new key: 60% ``set`` of a small dict,
    35% ``incr``, 5% ``merge``."""
    rng = random.Random(seed)
    rand = rng.random
    for i in range(count):
        key = f"user:{i % keyspace}"
        roll = rand()
        if roll < 0.60:
            yield ("set", key, {"lift": i % 31, "minute": i % 600, "n": i})
        elif roll < 0.95:
            yield ("incr", key, 1)
        else:
            yield ("merge", key, {"last_lift": i % 31})


def distinct_keys(count: int, keyspace: int = 1_000_000) -> int:
    """How many distinct keys :func:`backlog_ops` touches."""
    return min(count, keyspace)
