"""Which partitions a worker holds, in which role, and the moves between roles.

Every heartbeat the worker computes ``assign(live members)`` and converges:

- *take* a partition as standby: load the snapshot from Redis, replay the stream;
- *take* it as primary: claim it first (bump the epoch, which fences every
  earlier owner), then load and replay;
- *promote* a warm standby: claim, then flush only once it has applied at
  least the offset the previous primary flushed last (the claim makes that
  offset final), so Redis never moves backwards;
- *demote* a primary: flush, keep consuming as standby;
- *release*: flush if primary, stop consuming, forget.

A flush refused by the fence drops the partition at once.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liftline.cluster.registry import current_holders, live_members, owners_of
from liftline.errors import Fenced, StoreError, StoreUnavailable
from liftline.partitioning import assign
from liftline.store.memory import PartitionStore

if TYPE_CHECKING:
    from liftline.workers.partition_worker import Worker

log = logging.getLogger(__name__)

PRIMARY = "primary"
STANDBY = "standby"


@dataclass
class Owned:
    """A partition this worker holds."""

    store: PartitionStore
    role: str
    epoch: int = 0
    flushed_offset: int = -1
    # A promoted standby flushes only once it has applied at least this offset.
    min_flush_offset: int = -1
    channel: Any = None
    last_tag: int = 0
    acked_tag: int = 0
    flushed_at: float = field(default_factory=time.monotonic)


class Ownership:
    """Converges the worker's partitions on the assignment of the live members."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.last_table: dict[int, list[str]] = {}

    @property
    def owned(self) -> dict[int, Owned]:
        return self.worker.owned

    def rebalance(self) -> None:
        """Take, promote, demote and release partitions to match the assignment."""
        self._check_fences()
        me = self.worker.member_id
        members = live_members(self.worker.store.client, self.worker.store.keys)
        # Our own holdings as of now, not as of the last heartbeat; and if our
        # record expired (a long pause), we are back all the same.
        members[me] = {"partitions": self.worker.report()}
        owners = owners_of(self.worker.store.client, self.worker.store.keys)
        table = assign(members, self.settings.partitions, self.settings.replicas,
                       current=current_holders(members, self.settings.partitions, owners))
        self.last_table = table
        wanted = {p: (PRIMARY if owners[0] == me else STANDBY)
                  for p, owners in table.items() if me in owners}
        for partition in [p for p in self.owned if p not in wanted]:
            self.release(partition)
        for partition, role in sorted(wanted.items(), key=lambda item: item[1] != PRIMARY):
            held = self.owned.get(partition)
            if held is None:
                self.take(partition, role)
            elif held.role != role:
                if role == PRIMARY:
                    self.promote(partition)
                else:
                    self.demote(partition)
        self._prune_standbys()

    def _check_fences(self) -> None:
        """Drop the partitions another worker claimed since we did.

        A superseded primary with nothing to flush would otherwise never learn
        it lost the partition, and keep reporting itself as primary.
        """
        leading = [p for p, o in self.owned.items() if o.role == PRIMARY]
        if not leading:
            return
        for partition, epoch in self.worker.store.epochs(leading).items():
            held = self.owned.get(partition)
            if held is not None and epoch > held.epoch:
                self.drop(partition, f"claimed by another worker (epoch {epoch} > {held.epoch})")

    def take(self, partition: int, role: str) -> None:
        started = time.monotonic()
        store_ = self.worker.store
        epoch, claimed_offset = store_.claim(partition, self.worker.member_id) \
            if role == PRIMARY else (0, -1)
        data, offset, watermarks = store_.load(partition)
        store = PartitionStore(partition, reducers=self.worker.app.reducers,
                               append_cap=self.settings.append_cap)
        store.load(data, offset, watermarks)
        self.owned[partition] = Owned(store, role, epoch, offset, max(offset, claimed_offset))
        # A loaded snapshot is long-lived: keep the collector from rescanning it.
        gc.freeze()
        self.worker.consume(partition)
        log.info("took partition %d as %s (epoch %d): %d keys at offset %d in %.3fs",
                 partition, role, epoch, len(data), offset, time.monotonic() - started)

    def promote(self, partition: int) -> None:
        held = self.owned[partition]
        epoch, flushed = self.worker.store.claim(partition, self.worker.member_id)
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
        self.worker.stop_consuming(partition)
        self.owned.pop(partition, None)
        log.info("released partition %d", partition)

    def drop(self, partition: int, why: str) -> None:
        """Forget a partition at once, without flushing (it was fenced)."""
        log.error("dropping partition %d: %s", partition, why)
        self.worker.stop_consuming(partition)
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
        if held is None or held.role != PRIMARY:
            return
        store = held.store
        if store.applied_offset < held.min_flush_offset:
            return  # still catching up to what the previous primary flushed
        if store.applied_offset == held.flushed_offset and not store.dirty and not store.dead:
            return
        batch = store.take_flush()
        try:
            self.worker.store.flush(batch, held.epoch)
        except Fenced as exc:
            self.drop(partition, str(exc))
            return
        except StoreError:
            store.restore_unflushed(batch)
            raise
        held.flushed_offset = batch.offset
        held.flushed_at = time.monotonic()

    def _prune_standbys(self) -> None:
        """Standbys forget changes their primary has flushed (bounds their dirty set)."""
        standbys = [p for p, o in self.owned.items() if o.role == STANDBY]
        if not standbys:
            return
        for partition, offset in self.worker.store.flushed_offsets(standbys).items():
            held = self.owned.get(partition)
            if held is not None and held.role == STANDBY:
                held.store.prune(offset)
                held.flushed_offset = offset
