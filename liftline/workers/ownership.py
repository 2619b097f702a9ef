"""Which partitions a worker holds, in which role, and the moves between roles.

Every heartbeat the worker asks ``plan`` for the moves toward the assignment
of the live members, and carries them out:

- *take* a partition as standby: load the snapshot from Redis, replay the stream;
- *take* it as primary: claim it first (bump the epoch, which fences every
  earlier owner), then load and replay;
- *promote* a warm standby: claim, then flush only once it has applied at
  least the offset the previous primary flushed last (the claim makes that
  offset final), so Redis never moves backwards;
- *demote* a primary: flush, keep consuming as standby;
- *release*: flush if primary, stop consuming, forget.

A flush refused by the fence drops the partition at once.

``Ownership`` sees its worker only through ``Host`` (who it is, the durable
store, the live members, starting and stopping a partition's consumer), so it
runs as well against a fake host in unit tests.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from liftline.errors import Fenced, StoreError, StoreUnavailable
from liftline.settings import Settings
from liftline.store.memory import Entry, FlushBatch, PartitionStore, Reducer
from liftline.workers import plan as plans
from liftline.workers.plan import FLUSH, PRIMARY, STANDBY, Move

log = logging.getLogger(__name__)

__all__ = ["PRIMARY", "STANDBY", "DurableStore", "Host", "Owned", "Ownership"]


class DurableStore(Protocol):
    """The part of ``RedisStore`` that ownership uses: claims, epochs, snapshots, flushes."""

    def claim(self, partition: int, owner: str) -> tuple[int, int]: ...
    def epochs(self, partitions: list[int]) -> dict[int, int]: ...
    def flushed_offsets(self, partitions: list[int]) -> dict[int, int]: ...
    def load(self, partition: int) -> tuple[dict[str, Entry], int, dict[str, int],
                                            dict[str, list[list[int]]]]: ...
    def flush(self, batch: FlushBatch, epoch: int, previous: int | None = None) -> None: ...


class Host(Protocol):
    """What ownership needs from the worker that holds the partitions."""

    @property
    def member_id(self) -> str: ...

    @property
    def store(self) -> DurableStore: ...

    def live_members(self) -> dict[str, dict[str, Any]]:
        """The registry's live members, each with its ``"partitions"`` report."""
        ...

    def owners(self) -> dict[int, str]:
        """The owners hash: the member that last claimed each partition."""
        ...

    def consume(self, partition: int, store: PartitionStore) -> None:
        """Apply the partition's stream to ``store`` from just after its applied offset."""
        ...

    def stop_consuming(self, partition: int) -> None:
        """Stop applying the partition's stream (nothing if it is not consumed)."""
        ...


@dataclass
class Owned:
    """A partition this worker holds: its state, role, epoch and offsets."""

    store: PartitionStore
    role: str
    epoch: int = 0
    flushed_offset: int = -1
    # A promoted standby flushes only once it has applied at least this offset.
    min_flush_offset: int = -1


class Ownership:
    """Converges the worker's partitions on the assignment of the live members."""

    def __init__(self, host: Host, settings: Settings,
                 reducers: Mapping[str, Reducer] | None = None) -> None:
        self.host = host
        self.settings = settings
        # Kept by reference: a reducer registered later still reaches the next take.
        self.reducers: Mapping[str, Reducer] = reducers if reducers is not None else {}
        self.owned: dict[int, Owned] = {}
        self.last_table: dict[int, list[str]] = {}

    def rebalance(self) -> None:
        """Take, promote, demote and release partitions to match the assignment."""
        self._check_fences()
        members = self.host.live_members()
        owners = self.host.owners()
        decided = plans.plan(self.host.member_id, members, owners,
                             {p: o.role for p, o in self.owned.items()},
                             self.settings.partitions, self.settings.replicas)
        self.last_table = decided.table
        for move in decided.moves:
            self._carry_out(move)
        self._prune_standbys()

    def _carry_out(self, move: Move) -> None:
        action, partition = move.action, move.partition
        if action == plans.RELEASE:
            self.release(partition)
        elif action == plans.TAKE_PRIMARY:
            self.take(partition, PRIMARY)
        elif action == plans.TAKE_STANDBY:
            self.take(partition, STANDBY)
        elif action == plans.PROMOTE:
            self.promote(partition)
        elif action == plans.DEMOTE:
            self.demote(partition)
        else:
            raise ValueError(f"unknown move {action!r}")

    def _check_fences(self) -> None:
        """Drop the partitions another worker claimed since we did.

        A superseded primary with nothing to flush would otherwise never learn
        it lost the partition, and keep reporting itself as primary.
        """
        leading = {p: o.epoch for p, o in self.owned.items() if o.role == PRIMARY}
        if not leading:
            return
        epochs = self.host.store.epochs(list(leading))
        for partition in plans.fenced(leading, epochs):
            self.drop(partition, f"claimed by another worker "
                                 f"(epoch {epochs[partition]} > {leading[partition]})")

    def take(self, partition: int, role: str, claimed: tuple[int, int] | None = None) -> None:
        """Load ``partition`` from Redis and consume its stream from there; a primary
        claims it first (unless ``claimed`` gives the claim's epoch and offset)."""
        started = time.monotonic()
        durable = self.host.store
        if claimed is None:
            claimed = durable.claim(partition, self.host.member_id) \
                if role == PRIMARY else (0, -1)
        epoch, claimed_offset = claimed
        data, offset, watermarks, gaps = durable.load(partition)
        # The worker checked at start that the cluster keeps this same window.
        store = PartitionStore(partition, reducers=self.reducers,
                               append_cap=self.settings.append_cap,
                               producer_id_ttl_s=self.settings.producer_id_ttl_s)
        store.load(data, offset, watermarks, gaps)
        self.owned[partition] = Owned(store, role, epoch, offset, max(offset, claimed_offset))
        # A loaded snapshot is long-lived: keep the collector from rescanning it.
        gc.freeze()
        self.host.consume(partition, store)
        log.info("took partition %d as %s (epoch %d): %d keys at offset %d in %.3fs",
                 partition, role, epoch, len(data), offset, time.monotonic() - started)

    def promote(self, partition: int) -> None:
        held = self.owned[partition]
        epoch, flushed = self.host.store.claim(partition, self.host.member_id)
        if flushed < held.flushed_offset:
            # Redis lost flushes this standby already pruned (a Redis failover to a
            # replica that lacked them): its changes no longer cover what Redis misses.
            log.warning("partition %d: Redis holds offset %d, behind the %d this standby "
                        "pruned to; loading it again to lead it", partition, flushed,
                        held.flushed_offset)
            self.host.stop_consuming(partition)
            self.owned.pop(partition, None)
            self.take(partition, PRIMARY, claimed=(epoch, flushed))
            return
        held.role, held.epoch = PRIMARY, epoch
        held.min_flush_offset = flushed
        held.flushed_offset = flushed
        log.info("promoted to primary of partition %d (epoch %d, applied %d, flushed %d)",
                 partition, epoch, held.store.applied_offset, flushed)

    def demote(self, partition: int) -> None:
        self._flush(partition)
        held = self.owned.get(partition)
        if held is not None:
            held.role = STANDBY
            log.info("partition %d: now standby", partition)

    def release(self, partition: int) -> None:
        held = self.owned.get(partition)
        if held is None:
            return
        if held.role == PRIMARY:
            self._flush(partition)
        self.host.stop_consuming(partition)
        self.owned.pop(partition, None)
        log.info("released partition %d", partition)

    def drop(self, partition: int, why: str) -> None:
        """Forget a partition at once, without flushing (it was fenced)."""
        log.error("dropping partition %d: %s", partition, why)
        self.host.stop_consuming(partition)
        self.owned.pop(partition, None)

    # -- flushing ----------------------------------------------------------
    def flush_all(self, final: bool = False) -> None:
        """Flush every primary partition that changed; on ``final``, retry briefly."""
        for partition in [p for p, o in self.owned.items() if o.role == PRIMARY]:
            try:
                self._flush(partition)
            except StoreUnavailable as exc:
                log.warning("flush postponed: %s", exc)
                if not final:
                    return

    def _flush(self, partition: int) -> None:
        held = self.owned.get(partition)
        if held is None:
            return
        store = held.store
        decision = plans.flush_decision(held.role, store.applied_offset, held.flushed_offset,
                                        held.min_flush_offset, store.has_changes)
        if decision != FLUSH:
            return
        batch = store.take_flush()
        try:
            self.host.store.flush(batch, held.epoch, held.flushed_offset)
        except Fenced as exc:
            self.drop(partition, str(exc))
            return
        except StoreError:
            store.restore_unflushed(batch)
            raise
        held.flushed_offset = batch.offset

    def _prune_standbys(self) -> None:
        """Standbys forget changes their primary has flushed (bounds their dirty set)."""
        standbys = [p for p, o in self.owned.items() if o.role == STANDBY]
        if not standbys:
            return
        for partition, offset in self.host.store.flushed_offsets(standbys).items():
            held = self.owned.get(partition)
            if held is not None and held.role == STANDBY:
                held.store.prune(offset)
                # What it pruned stays pruned: an offset Redis lost does not bring it back.
                held.flushed_offset = max(held.flushed_offset, offset)

    # -- what the worker reports ------------------------------------------
    def pending_writes(self) -> int:
        """Writes applied since the last flush or prune, over all held partitions."""
        return sum(o.store.pending_writes for o in self.owned.values())

    def report(self) -> dict[int, Any]:
        """Per held partition: role, applied/flushed offsets, keys, epoch, and the
        writes applied since this worker loaded it (for status and the dashboard's
        writes/s)."""
        return {
            p: {
                "role": o.role,
                "applied": o.store.applied_offset,
                "flushed": o.flushed_offset,
                "keys": len(o.store.data),
                "epoch": o.epoch,
                "writes": o.store.applied_writes,
                # Writes missing from the stream (open gaps) and gaps seen since taken.
                "missing": o.store.missing,
                "gaps": o.store.gaps_opened,
            }
            for p, o in self.owned.items()
        }
