"""In-memory stand-ins for what Ownership talks to: the durable store, the streams, the worker.

``FakeDurable`` keeps what RedisStore's claim and flush scripts keep (data,
offset, watermarks, epoch, owners) and refuses a flush from an older epoch as
the flush script does. ``Streams`` is one ordered log per partition;
``Node`` is a worker: a ``FakeHost`` (its consumers apply the logs to the
stores they were given) and the ``Ownership`` under test. A unit test of the
logic, not proof of the pipeline.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from liftline.errors import Fenced, StoreUnavailable
from liftline.settings import Settings
from liftline.store.memory import FlushBatch, PartitionStore, unpack_entry
from liftline.workers.ownership import Ownership


class FakeDurable:
    """What Redis holds per partition, with the claim and flush scripts' rules."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, list[Any]]] = defaultdict(dict)
        self.offset: dict[int, int] = {}
        self.watermarks: dict[int, dict[str, int]] = defaultdict(dict)
        self.gaps: dict[int, dict[str, list[list[int]]]] = defaultdict(dict)
        self.epoch: dict[int, int] = defaultdict(int)
        self.owner: dict[int, str] = {}
        self.accepted: list[tuple[int, int, int]] = []  # (partition, offset, epoch) per flush
        self.down = False

    def snapshot(self, partition: int) -> tuple[Any, ...]:
        """A copy of the partition's data, offset and watermarks (not its epoch)."""
        return copy.deepcopy((self.data[partition], self.offset[partition],
                              self.watermarks[partition]))

    def lose_flushes(self, partition: int, snapshot: tuple[Any, ...]) -> None:
        """A failover to a replica that lacked the flushes since ``snapshot``: the
        partition's state goes back to it, its epoch stays."""
        self.data[partition], self.offset[partition], self.watermarks[partition] = snapshot

    def _reach(self) -> None:
        if self.down:
            raise StoreUnavailable("Redis unreachable: fake outage")

    def claim(self, partition: int, owner: str) -> tuple[int, int]:
        self._reach()
        self.epoch[partition] += 1
        self.owner[partition] = owner
        return self.epoch[partition], self.offset.get(partition, -1)

    def owners(self) -> dict[int, str]:
        self._reach()
        return dict(self.owner)

    def epochs(self, partitions: list[int]) -> dict[int, int]:
        self._reach()
        return {p: self.epoch[p] for p in partitions}

    def flushed_offsets(self, partitions: list[int]) -> dict[int, int]:
        self._reach()
        return {p: self.offset.get(p, -1) for p in partitions}

    def load(self, partition: int) -> tuple[dict[str, list[Any]], int, dict[str, int],
                                            dict[str, list[list[int]]]]:
        self._reach()
        return (copy.deepcopy(self.data[partition]), self.offset.get(partition, -1),
                dict(self.watermarks[partition]), copy.deepcopy(self.gaps[partition]))

    def flush(self, batch: FlushBatch, epoch: int, previous: int | None = None) -> None:
        self._reach()
        p = batch.partition
        if self.epoch[p] > epoch:
            raise Fenced(f"partition {p}: flush with epoch {epoch} refused, "
                         f"current is {self.epoch[p]}")
        stored = self.offset.get(p, -1)
        if previous is not None and stored < previous:
            raise Fenced(f"partition {p}: Redis holds offset {stored}, not {previous}")
        for key, entry in batch.changed:
            self.data[p][key] = copy.deepcopy(entry)
        for key in batch.deleted:
            self.data[p].pop(key, None)
        self.watermarks[p].update(batch.watermarks)
        for producer, ranges in batch.gaps.items():
            if ranges:
                self.gaps[p][producer] = copy.deepcopy(ranges)
            else:
                self.gaps[p].pop(producer, None)
        self.offset[p] = batch.offset
        self.epoch[p] = epoch
        self.accepted.append((p, batch.offset, epoch))

    def values(self, partition: int) -> dict[str, Any]:
        return {k: unpack_entry(entry)[0] for k, entry in self.data[partition].items()}


class Streams:
    """One ordered log of batches per partition, as the partition streams are."""

    def __init__(self) -> None:
        self.log: dict[int, list[tuple[str, int, list[Any]]]] = defaultdict(list)
        self._seq: dict[str, int] = defaultdict(lambda: 1)

    def publish(self, partition: int, *writes: Any, producer: str = "p") -> int:
        """Append one batch; returns its offset."""
        first = self._seq[producer]
        self._seq[producer] += len(writes)
        self.log[partition].append((producer, first, [list(w) for w in writes]))
        return len(self.log[partition]) - 1

    def fold(self, partition: int) -> dict[str, Any]:
        """The partition's state after the whole log: what every replica must reach."""
        store = PartitionStore(partition)
        for offset, (producer, first, writes) in enumerate(self.log[partition]):
            store.apply_batch(offset, producer, first, copy.deepcopy(writes))
        return {k: unpack_entry(entry)[0] for k, entry in store.data.items()}


class FakeHost:
    """The worker as Ownership sees it; its consumers apply the logs when pumped."""

    def __init__(self, member_id: str, durable: FakeDurable,
                 registry: dict[str, dict[int, Any]], streams: Streams) -> None:
        self.member_id = member_id
        self.store = durable
        self.registry = registry
        self.streams = streams
        self.consuming: dict[int, PartitionStore] = {}

    def live_members(self) -> dict[str, dict[str, Any]]:
        return {m: {"partitions": dict(report)} for m, report in self.registry.items()}

    def owners(self) -> dict[int, str]:
        return self.store.owners()

    def consume(self, partition: int, store: PartitionStore) -> None:
        self.consuming[partition] = store

    def stop_consuming(self, partition: int) -> None:
        self.consuming.pop(partition, None)

    def pump(self, upto: int | None = None) -> None:
        """Deliver every batch after each store's applied offset (up to ``upto``)."""
        for partition, store in self.consuming.items():
            log = self.streams.log[partition]
            end = len(log) if upto is None else min(len(log), upto + 1)
            for offset in range(store.applied_offset + 1, end):
                producer, first, writes = log[offset]
                store.apply_batch(offset, producer, first, copy.deepcopy(writes))


class Node:
    """One worker: its host and its Ownership, sharing a registry, a store and streams."""

    def __init__(self, member_id: str, settings: Settings, durable: FakeDurable,
                 registry: dict[str, dict[int, Any]], streams: Streams) -> None:
        self.host = FakeHost(member_id, durable, registry, streams)
        self.ownership = Ownership(self.host, settings)
        self.registry = registry
        self.registry[member_id] = {}

    @property
    def id(self) -> str:
        return self.host.member_id

    def turn(self) -> None:
        """A heartbeat as the worker does it: report, then rebalance."""
        self.registry[self.id] = self.ownership.report()
        self.ownership.rebalance()

    def crash(self) -> None:
        """Gone without a word; its record has expired."""
        self.registry.pop(self.id, None)

    def roles(self) -> dict[int, str]:
        return {p: o.role for p, o in self.ownership.owned.items()}

    def values(self, partition: int) -> dict[str, Any]:
        data = self.ownership.owned[partition].store.data
        return {k: unpack_entry(e)[0] for k, e in data.items()}
