"""A registry and the workers that act on it, for unit tests of the ownership plan.

The registry holds what Redis holds: each registered member's last heartbeat
report, the owners hash and the epochs. A claim (taking a partition as
primary, or a promotion) bumps the epoch and writes the owners hash, as the
claim script does. A crashed worker stops acting but its record stays until
it expires; a worker that leaves deregisters at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from liftline.workers.plan import (
    DEMOTE,
    PRIMARY,
    PROMOTE,
    RELEASE,
    STANDBY,
    TAKE_PRIMARY,
    TAKE_STANDBY,
    Plan,
    fenced,
    plan,
)


@dataclass
class SimWorker:
    held: dict[int, str] = field(default_factory=dict)  # partition → role
    claims: dict[int, int] = field(default_factory=dict)  # partition → epoch of our claim


class Cluster:
    """Workers and a shared registry; rounds of heartbeats and rebalances."""

    def __init__(self, partitions: int, replicas: int) -> None:
        self.partitions = partitions
        self.replicas = replicas
        self.reports: dict[str, dict[int, str]] = {}  # registered member → last report
        self.owners: dict[int, str] = {}
        self.epochs = dict.fromkeys(range(partitions), 0)
        self.workers: dict[str, SimWorker] = {}  # the running ones
        self.fenced = 0

    # -- membership events -------------------------------------------------
    def join(self, member: str) -> None:
        self.workers[member] = SimWorker()
        self.reports[member] = {}

    def leave(self, member: str) -> None:
        """A graceful stop: release everything, deregister."""
        del self.workers[member]
        del self.reports[member]

    def crash(self, member: str) -> None:
        """Stops acting; its record lingers until :meth:`expire`."""
        del self.workers[member]

    def expire(self, member: str) -> None:
        del self.reports[member]

    @property
    def lingering(self) -> set[str]:
        """Registered members that no longer act (crashed, heartbeat not yet expired)."""
        return set(self.reports) - set(self.workers)

    # -- one worker's turn ---------------------------------------------------
    def members(self) -> dict[str, dict[str, object]]:
        return {m: {"partitions": {p: {"role": role} for p, role in report.items()}}
                for m, report in self.reports.items()}

    def beat(self, member: str) -> None:
        self.reports[member] = dict(self.workers[member].held)

    def check_fences(self, member: str) -> None:
        w = self.workers[member]
        leading = {p: w.claims[p] for p, role in w.held.items() if role == PRIMARY}
        for p in fenced(leading, self.epochs):
            del w.held[p], w.claims[p]
            self.fenced += 1

    def decide(self, member: str) -> Plan:
        return plan(member, self.members(), self.owners, self.workers[member].held,
                    self.partitions, self.replicas)

    def carry_out(self, member: str, decided: Plan) -> None:
        w = self.workers[member]
        for move in decided.moves:
            action, p = move.action, move.partition
            if action == RELEASE:
                assert p in w.held
                del w.held[p]
                w.claims.pop(p, None)
            elif action in (TAKE_PRIMARY, PROMOTE):
                assert (p in w.held) == (action == PROMOTE)
                assert action == TAKE_PRIMARY or w.held[p] == STANDBY
                self.epochs[p] += 1
                self.owners[p] = member
                w.held[p], w.claims[p] = PRIMARY, self.epochs[p]
            elif action == TAKE_STANDBY:
                assert p not in w.held
                w.held[p] = STANDBY
            else:
                assert action == DEMOTE and w.held[p] == PRIMARY
                w.held[p] = STANDBY
                del w.claims[p]

    # -- rounds ----------------------------------------------------------------
    def same_view_round(self, rng: random.Random) -> dict[str, Plan]:
        """Every worker beats, then all decide on the same registry, then all act."""
        running = sorted(self.workers)
        for member in running:
            self.beat(member)
        for member in running:
            self.check_fences(member)
        plans = {member: self.decide(member) for member in running}
        rng.shuffle(running)
        for member in running:
            self.carry_out(member, plans[member])
        return plans

    def staggered_round(self, rng: random.Random) -> dict[str, Plan]:
        """Workers take turns, each on the registry as the earlier ones left it."""
        running = sorted(self.workers)
        rng.shuffle(running)
        plans = {}
        for member in running:
            self.beat(member)
            self.check_fences(member)
            plans[member] = self.decide(member)
            self.carry_out(member, plans[member])
        return plans

    def primaries(self, p: int) -> list[str]:
        return sorted(m for m, w in self.workers.items() if w.held.get(p) == PRIMARY)

    def holdings(self) -> dict[str, set[int]]:
        return {m: set(w.held) for m, w in self.workers.items()}


def step(cluster: Cluster, rng: random.Random, counter: list[int], *,
         max_members: int = 8) -> str:
    """One random membership event (join, leave or crash; lingering records expire first)."""
    for member in sorted(cluster.lingering):
        cluster.expire(member)
        return f"expire {member}"
    running = sorted(cluster.workers)
    roll = rng.random()
    if len(running) < 2 or (roll < 0.5 and len(running) < max_members):
        counter[0] += 1
        member = f"w{counter[0]}"
        cluster.join(member)
        return f"join {member}"
    member = rng.choice(running)
    if roll < 0.8:
        cluster.leave(member)
        return f"leave {member}"
    cluster.crash(member)
    return f"crash {member}"
