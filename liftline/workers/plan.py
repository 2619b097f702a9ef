"""What a worker should do about its partitions: pure decisions, no I/O.

``plan`` turns one view of the registry (the live members with their
reports, the owners hash) and what this worker holds into the moves that
converge it on the assignment. Every worker that reads the same registry
computes the same table (``partitioning.assign`` is deterministic), so each
carries out its own share of one agreed change.

``fenced`` and ``flush_decision`` are the other two choices a holder makes:
which primaries it lost to a newer claim, and whether a primary flushes now.
``Ownership`` carries all three out against Redis and the stream consumers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liftline.cluster.registry import current_holders
from liftline.partitioning import assign

PRIMARY = "primary"
STANDBY = "standby"

# Moves, in the order a plan lists them.
RELEASE = "release"
TAKE_PRIMARY = "take_primary"
PROMOTE = "promote"
TAKE_STANDBY = "take_standby"
DEMOTE = "demote"

# Flush decisions.
FLUSH = "flush"
NOT_PRIMARY = "not_primary"
CATCHING_UP = "catching_up"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Move:
    """One change to one partition this worker makes."""

    action: str  # release | take_primary | promote | take_standby | demote
    partition: int


@dataclass(frozen=True)
class Plan:
    """The assignment as this worker sees it, and its moves toward it."""

    table: dict[int, list[str]]
    moves: tuple[Move, ...]

    def wanted(self, me: str) -> dict[int, str]:
        """The partitions the table gives ``me``, with their roles."""
        return _wanted(self.table, me)


def plan(me: str, members: Mapping[str, dict[str, Any]], owners: Mapping[int, str],
         held: Mapping[int, str], partitions: int, replicas: int) -> Plan:
    """The moves that bring ``held`` (partition → role) to what the assignment gives ``me``.

    ``members`` are the live members as the registry lists them (each with a
    ``"partitions"`` report); ``owners`` is the owners hash (partition → the
    member that claimed it last). Our own entry is replaced by ``held``: the
    registry's copy of our report lags by up to a heartbeat, and if it expired
    (a long pause) we are back all the same.

    Order: every release first (freeing capacity and flushing before anyone
    else needs the data), then the moves to primary (takes and promotions, in
    partition order), then the moves to standby (takes and demotions). Each
    partition gets at most one move; a partition held in its wanted role gets
    none.
    """
    view: dict[str, dict[str, Any]] = dict(members)
    view[me] = {"partitions": {p: {"role": role} for p, role in held.items()}}
    table = assign(view, partitions, replicas,
                   current=current_holders(view, partitions, dict(owners)))
    wanted = _wanted(table, me)
    moves = [Move(RELEASE, p) for p in held if p not in wanted]
    for role in (PRIMARY, STANDBY):
        for p in sorted(q for q, r in wanted.items() if r == role):
            if p not in held:
                moves.append(Move(TAKE_PRIMARY if role == PRIMARY else TAKE_STANDBY, p))
            elif held[p] != role:
                moves.append(Move(PROMOTE if role == PRIMARY else DEMOTE, p))
    return Plan(table, tuple(moves))


def _wanted(table: Mapping[int, list[str]], me: str) -> dict[int, str]:
    return {p: (PRIMARY if owners[0] == me else STANDBY)
            for p, owners in table.items() if me in owners}


def fenced(primaries: Mapping[int, int], epochs: Mapping[int, int]) -> list[int]:
    """The primaries to drop: those whose partition was claimed since we claimed it.

    ``primaries`` maps each partition we lead to the epoch of our claim;
    ``epochs`` holds the partitions' current epochs (a partition missing
    there is left alone). A newer epoch means another worker owns it now.
    """
    return sorted(p for p, mine in primaries.items() if epochs.get(p, mine) > mine)


def flush_decision(role: str, applied: int, flushed: int, min_flush: int,
                   changed: bool) -> str:
    """Whether a held partition flushes now: ``FLUSH`` or why not.

    Only a primary flushes (``NOT_PRIMARY``). A promoted standby waits until it
    has applied at least ``min_flush``, the offset its predecessor flushed
    last, so Redis never moves backwards (``CATCHING_UP``). A primary with
    nothing new since its last flush (same offset, no changed keys nor dead
    letters) has nothing to write (``UNCHANGED``).
    """
    if role != PRIMARY:
        return NOT_PRIMARY
    if applied < min_flush:
        return CATCHING_UP
    if applied == flushed and not changed:
        return UNCHANGED
    return FLUSH
