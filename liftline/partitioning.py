"""Key → partition, and partition → owners.

The hash must be identical in every process and every Python version, so it is
CRC-32 of the key's UTF-8 bytes, never the built-in ``hash()`` (randomized per
process). The number of partitions is fixed per cluster: adding workers moves
whole partitions and never re-hashes a key.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``; stable across processes and hosts.

    A key with a non-empty ``{tag}`` is placed by its tag alone (the first ``{``
    and the next ``}``, as Redis Cluster does), so keys that share a tag share a
    partition: their writes travel in one batch, one confirm, and are applied in
    the order they were sent.
    """
    return zlib.crc32(hash_part(key).encode("utf-8", "surrogatepass")) % partitions


def hash_part(key: str) -> str:
    """What :func:`partition_for` hashes: the ``{tag}`` of ``key`` if it has one, else all."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def _score(partition: int, member: str) -> int:
    """Rendezvous weight of ``member`` for ``partition``: stable, uniform, 64-bit."""
    digest = hashlib.blake2b(f"{partition}/{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(
    members: Iterable[str],
    partitions: int,
    replicas: int,
    current: Mapping[int, Sequence[str]] | None = None,
) -> dict[int, list[str]]:
    """Owners of every partition: ``[primary, standby, …]`` on distinct members.

    Deterministic in its inputs, so every worker that reads the same registry
    computes the same table. Balanced: no member gets more than ceil(P/N)
    primaries nor more than ceil(P·R'/N) replicas, where R' = min(R, N).

    ``current`` (partition → holders, the primary first, or ``""`` in first
    place when the partition has no live primary) makes it sticky: a holder
    keeps its place while the bounds allow, a lost primary is replaced by one
    of its standbys (the first in rendezvous order), and only
    what the bounds force moves to a new member. The rest is rendezvous hashing,
    so a cold start spreads evenly. With fewer members than R, each partition
    gets every member (short replication).
    """
    names = sorted(set(members))
    if not names:
        return {p: [] for p in range(partitions)}
    alive = set(names)
    n = len(names)
    width = min(replicas, n)
    primary_cap = -(-partitions // n)
    replica_cap = -(-partitions * width // n)
    ranked: dict[int, list[str]] = {}
    for p in range(partitions):
        held = [m for m in (current or {}).get(p, ()) if m in alive]
        by_score = sorted(names, key=functools.partial(_score, p), reverse=True)
        # The live primary first, then the other holders, then everyone else;
        # each group in rendezvous order.
        primary = held[:1] if current and current.get(p) and current[p][0] in alive else []
        ranked[p] = list(dict.fromkeys(
            primary + [m for m in by_score if m in held] + by_score))
    orphaned = {p: bool(current) and (not (current or {}).get(p)
                                      or current[p][0] not in alive)  # type: ignore[index]
                for p in range(partitions)}
    table: dict[int, list[str]] = {p: [] for p in range(partitions)}
    primaries = dict.fromkeys(names, 0)
    load = dict.fromkeys(names, 0)
    for rank in range(width):
        # Partitions whose favourite members score highest choose first, so a
        # capacity bound displaces the weakest claims, not an arbitrary one.
        # Partitions whose primary is gone choose first, so that their standbys
        # still have room to be promoted warm.
        order = sorted(range(partitions),
                       key=lambda p: (not orphaned[p], -_score(p, ranked[p][rank])))
        for p in order:
            for member in ranked[p]:
                if member in table[p] or load[member] >= replica_cap:
                    continue
                if rank == 0 and primaries[member] >= primary_cap:
                    continue
                table[p].append(member)
                load[member] += 1
                if rank == 0:
                    primaries[member] += 1
                break
            else:
                _swap_in(p, table, ranked[p], load, replica_cap)
    return table


def _swap_in(p: int, table: dict[int, list[str]], ranked: list[str],
             load: dict[str, int], cap: int) -> None:
    """Give ``p`` one more standby when every eligible member is full.

    Some member ``spare`` has room but already holds ``p``; some full member
    ``full`` does not hold ``p``. Find a partition ``q`` where ``full`` is a
    standby and ``spare`` is absent, move that standby slot to ``spare``, and
    give ``full`` to ``p``: loads stay within the cap, primaries do not change.
    """
    spares = [m for m in ranked if load[m] < cap]
    for full in ranked:
        if full in table[p]:
            continue
        for q, owners in table.items():
            if q == p or full not in owners[1:]:
                continue
            for spare in spares:
                if spare not in owners:
                    owners[owners.index(full)] = spare
                    load[spare] += 1
                    table[p].append(full)
                    return
