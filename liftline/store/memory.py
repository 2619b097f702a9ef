"""The in-memory state of one partition: a fold of its stream.

Applying the same stream in the same order gives the same state on every
replica: each op is deterministic, and a write whose ``(producer_id, seq)`` is
at or below the producer's watermark is a duplicate and is skipped.

Producer ids that carry their creation time (:func:`liftline.tickets.new_producer_id`)
expire: the partition's clock is the newest creation time among the ids it has
applied, and an id made more than ``producer_id_ttl_s`` before it is past the
horizon. Its watermark is forgotten and its batches are refused (dead letters),
so a retry can never be applied twice, however late it comes. The clock comes
from the stream alone, so every replica expires the same ids at the same offset.

A batch that starts past its producer's watermark + 1 opens a gap (see
:mod:`liftline.store.gaps`): the missing seqs are recorded as a dead letter and
counted, the batch is applied, and a copy of the missing writes that comes later
fills the gap, applied once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from liftline.codec import MAX_DEPTH, MAX_KEY_BYTES, depth
from liftline.errors import InvalidWrite
from liftline.store.gaps import Gaps
from liftline.tickets import id_created

Reducer = Callable[[Any, Any], Any]
# An entry: (value, version), or those two packed as Redis holds them (bytes):
# what is loaded stays packed until a write needs it, and so does a list or a
# map that ``set`` stores, so a key costs a few dozen bytes instead of hundreds.
Entry = tuple[Any, int] | bytes
_NUMBER = (int, float)
_INT_MIN, _INT_END = -(2**63), 2**64  # what msgpack carries
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_CONTAINER = (dict, list)
_packb = msgpack.Packer(use_bin_type=True).pack


def unpack_entry(entry: Entry) -> tuple[Any, int]:
    """(value, version) of an entry, decoding a packed one."""
    if not isinstance(entry, bytes):
        return entry
    value, version = msgpack.unpackb(entry, raw=False, strict_map_key=True)
    return value, version


def pack_entry(entry: Entry) -> bytes:
    """An entry as Redis holds it: ``[value, version]`` in msgpack."""
    return entry if isinstance(entry, bytes) else _packb(entry)


def _stored(value: Any, version: int) -> Entry:
    """The entry for a value just written: packed when it is a container."""
    return _packb((value, version)) if value.__class__ in _CONTAINER else (value, version)


@dataclass
class DeadLetter:
    """A write or message that could not be applied, with why and where."""

    partition: int
    offset: int
    reason: str
    index: int = -1
    producer_id: str = ""
    seq: int = 0
    op: str = ""
    key: str = ""
    raw: bytes = b""
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition, "offset": self.offset, "reason": self.reason,
            "index": self.index, "producer_id": self.producer_id, "seq": self.seq,
            "op": self.op, "key": self.key, "raw": self.raw[:256], "at": self.at,
        }


class PartitionStore:
    """Keys → entries (``(value, version)``, maybe packed) for one partition, with
    dirty tracking.

    ``version`` counts the writes applied to a key since it was last absent;
    ``cas`` compares against it (0 means absent).
    """

    def __init__(
        self,
        partition: int,
        *,
        reducers: Mapping[str, Reducer] | None = None,
        append_cap: int = 1000,
        producer_id_ttl_s: int | None = None,
    ) -> None:
        self.partition = partition
        self.data: dict[str, Entry] = {}
        self.watermarks: dict[str, int] = {}
        # producer id → stream offset of its watermark's latest change (or its
        # expiry) not yet known to be flushed; like ``dirty`` for keys.
        self.wm_dirty: dict[str, int] = {}
        self.producer_id_ttl_s = producer_id_ttl_s
        self.clock = 0  # the newest creation time of an applied producer id
        self._next_sweep = 0
        self.applied_offset = -1
        # key → stream offset of its latest change not yet known to be flushed.
        self.dirty: dict[str, int] = {}
        self.dead: list[DeadLetter] = []
        self.pending_writes = 0
        self.applied_writes = 0
        self.skipped_duplicates = 0
        # Seqs missing below each producer's watermark, and the offset of their
        # latest change not yet known to be flushed (as for watermarks).
        self.gaps = Gaps()
        self.gaps_dirty: dict[str, int] = {}
        self.gaps_opened = 0  # gaps seen since this store was made or loaded
        self.gaps_filled = 0  # missing writes that arrived later and were applied
        self.append_cap = append_cap
        self._reducers = dict(reducers or {})

    # -- loading -----------------------------------------------------------
    def load(self, data: dict[str, Entry], offset: int, watermarks: dict[str, int],
             gaps: dict[str, list[list[int]]] | None = None) -> None:
        """Replace the state with a flushed snapshot (nothing becomes dirty)."""
        self.data = data
        self.applied_offset = offset
        self.watermarks = dict(watermarks)
        self.gaps = Gaps(gaps)
        self.gaps_dirty.clear()
        self.clock = max((c for c in map(id_created, watermarks) if c is not None), default=0)
        self._next_sweep = self.clock  # the next batch sweeps what expired meanwhile
        self.wm_dirty.clear()
        self.dirty.clear()
        self.dead.clear()
        self.pending_writes = 0

    # -- reads -------------------------------------------------------------
    def get(self, key: str) -> tuple[Any, int] | None:
        entry = self.data.get(key)
        return None if entry is None else unpack_entry(entry)

    def applied(self, producer_id: str, seq: int) -> bool:
        """Whether the write ``(producer_id, seq)`` is reflected in this state, or its
        producer id has expired (then nothing of it can be applied any more)."""
        if self.expired(producer_id):
            return True
        return self.watermarks.get(producer_id, 0) >= seq \
            and not (self.gaps and self.gaps.holds(producer_id, seq))

    @property
    def horizon(self) -> int:
        """Producer ids made before this time (Unix seconds) have expired; 0: none."""
        if self.producer_id_ttl_s is None or not self.clock:
            return 0
        return self.clock - self.producer_id_ttl_s

    def expired(self, producer_id: str) -> bool:
        """Whether ``producer_id`` is past the horizon (its batches are refused)."""
        created = id_created(producer_id)
        return created is not None and created < self.horizon

    @property
    def has_changes(self) -> bool:
        """Whether a flush would write something besides the offset."""
        return bool(self.dirty or self.dead or self.wm_dirty or self.gaps_dirty)

    @property
    def missing(self) -> int:
        """Writes missing from the stream (open gaps, over all producers)."""
        return self.gaps.missing() if self.gaps else 0

    # -- writes ------------------------------------------------------------
    def dead_letter(self, offset: int, reason: str, raw: bytes = b"") -> None:
        """Record a message that could not be decoded at ``offset``."""
        self.dead.append(DeadLetter(self.partition, offset, reason, raw=raw))

    def apply_batch(self, offset: int, producer_id: str, first_seq: int, writes: list[Any]) -> int:
        """Apply one batch from stream ``offset``; returns how many writes took effect.

        Duplicates are skipped; an invalid write becomes a dead letter and the
        rest of the batch is applied.
        """
        if offset <= self.applied_offset:
            return 0
        self.applied_offset = offset
        created = id_created(producer_id)
        if created is not None and self.producer_id_ttl_s is not None:
            if created > self.clock:
                self.clock = created
                if created >= self._next_sweep:
                    self._sweep(offset)
            if created < self.horizon:
                self.dead.append(DeadLetter(
                    self.partition, offset,
                    f"producer id expired: made at {created}, more than "
                    f"{self.producer_id_ttl_s} s before the partition's newest "
                    f"({self.clock}); batch of {len(writes)} write(s) not applied",
                    -1, producer_id, first_seq))
                return 0
        mark = self.watermarks.get(producer_id, 0)
        count = len(writes)
        last_seq = first_seq + count - 1
        indices: range | list[int]
        if first_seq <= mark + 1 and not (self.gaps and self.gaps.of(producer_id)):
            # The usual case: the batch follows its producer's last one (or repeats it).
            if last_seq <= mark:
                self.skipped_duplicates += count
                return 0
            indices = range(mark - first_seq + 1 if mark >= first_seq else 0, count)
        else:
            indices = self._across_gaps(offset, producer_id, first_seq, count, mark)
            if not indices:
                self.skipped_duplicates += count
                return 0
        self.skipped_duplicates += count - len(indices)
        applied = self._apply_writes(offset, producer_id, first_seq, writes, indices)
        if last_seq > mark:
            self.watermarks[producer_id] = last_seq
            self.wm_dirty[producer_id] = offset
        self.applied_writes += applied
        self.pending_writes += count
        return applied

    def _across_gaps(self, offset: int, producer_id: str, first_seq: int, count: int,
                     mark: int) -> list[int]:
        """The indices of a batch to apply when it fills or opens a gap of its producer."""
        last_seq = first_seq + count - 1
        below = min(last_seq, mark) - first_seq + 1  # writes at or below the watermark
        indices = self.gaps.fill(producer_id, first_seq, below) if below > 0 else []
        if indices:
            self.gaps_filled += len(indices)
            self.gaps_dirty[producer_id] = offset
        if first_seq > mark + 1:
            missing = (mark + 1, first_seq - 1)
            self.gaps_opened += 1
            self.gaps_dirty[producer_id] = offset
            given_up = self.gaps.open(producer_id, *missing)
            note = "" if given_up is None else (
                f"; too many gaps: seqs {given_up[0]}-{given_up[1]} are given up")
            self.dead.append(DeadLetter(
                self.partition, offset,
                f"gap: producer {producer_id} seqs {missing[0]}-{missing[1]} "
                f"({missing[1] - missing[0] + 1} writes) missing before this batch; "
                f"a copy that arrives later is applied{note}",
                -1, producer_id, missing[0], "gap"))
        if last_seq > mark:
            indices.extend(range(max(first_seq, mark + 1) - first_seq, count))
        return indices

    def _apply_writes(self, offset: int, producer_id: str, first_seq: int, writes: list[Any],
                      indices: range | list[int]) -> int:
        """Apply ``writes[i]`` for each index; invalid ones become dead letters."""
        data = self.data
        dirty = self.dirty
        applied = 0
        for index in indices:
            write = writes[index]
            try:
                if type(write) is not list or not 3 <= len(write) <= 4:
                    raise InvalidWrite("a write must be [op, key, value] or [op, key, value, arg]")
                op = write[0]
                key = write[1]
                if type(key) is not str or not key or (
                    len(key) > MAX_KEY_BYTES // 4
                    and len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES
                ):
                    raise InvalidWrite("key must be a non-empty string of at most 512 bytes")
                value = write[2]
                raw = data.get(key)
                entry = unpack_entry(raw) if isinstance(raw, bytes) else raw
                if op == "incr":
                    if type(value) not in _NUMBER:
                        raise InvalidWrite(
                            f"incr needs an int or float, got {type(value).__name__}"
                        )
                    if entry is None:
                        data[key] = (value, 1)
                    else:
                        current = entry[0]
                        if type(current) not in _NUMBER:
                            raise InvalidWrite(
                                f"incr on a {type(current).__name__} value"
                            )
                        total = current + value
                        if type(total) is int and not _INT_MIN <= total < _INT_END:
                            # msgpack could not carry it: the flush would fail on it
                            raise InvalidWrite("incr overflows the 64-bit range")
                        data[key] = (total, entry[1] + 1)
                elif op == "set":
                    self._check_depth(value)
                    data[key] = _stored(value, 1 if entry is None else entry[1] + 1)
                elif op == "delete":
                    if entry is None:
                        continue
                    del data[key]
                else:
                    self._apply_other(op, key, value, write, entry)
            except _NoChange:
                continue
            except InvalidWrite as exc:
                self._reject(offset, index, producer_id, first_seq + index, write, str(exc))
                continue
            dirty[key] = offset
            applied += 1
        return applied

    def _sweep(self, offset: int) -> None:
        """Forget the watermarks of expired ids (their removal flushes with ``offset``)."""
        assert self.producer_id_ttl_s is not None
        horizon = self.horizon
        gone = [pid for pid in self.watermarks
                if (created := id_created(pid)) is not None and created < horizon]
        if gone:
            for pid in gone:
                self.wm_dirty[pid] = offset
            self.gaps.forget(gone)  # the flush drops their gaps with their watermarks
            # Rebuilt rather than deleted from: a dict does not shrink as keys go.
            dropped = set(gone)
            self.watermarks = {pid: seq for pid, seq in self.watermarks.items()
                               if pid not in dropped}
        self._next_sweep = self.clock + max(1, self.producer_id_ttl_s // 16)

    def _reject(
        self, offset: int, index: int, producer_id: str, seq: int, write: Any, reason: str
    ) -> None:
        fields = write if type(write) is list else []
        op = str(fields[0])[:64] if fields else ""
        key = str(fields[1])[:128] if len(fields) > 1 else ""
        self.dead.append(
            DeadLetter(self.partition, offset, reason, index, producer_id, seq, op, key)
        )

    @staticmethod
    def _check_depth(value: Any) -> None:
        """Refuse values nested too deep or of a type outside the JSON-like set."""
        kind = type(value)
        if kind is dict or kind is list:
            if depth(value) > MAX_DEPTH:
                raise InvalidWrite(f"value is nested deeper than {MAX_DEPTH} levels")
        elif kind not in _PLAIN:
            raise InvalidWrite(f"values of type {kind.__name__} are not allowed")

    def _apply_other(
        self, op: Any, key: str, value: Any, write: list[Any], entry: tuple[Any, int] | None
    ) -> None:
        data = self.data
        arg = write[3] if len(write) == 4 else None
        self._check_depth(value)
        if op == "merge":
            if type(value) is not dict:
                raise InvalidWrite(f"merge needs a dict, got {type(value).__name__}")
            if entry is None:
                data[key] = (dict(value), 1)
            elif type(entry[0]) is not dict:
                raise InvalidWrite(f"merge on a {type(entry[0]).__name__} value")
            else:
                entry[0].update(value)  # a live dict of this entry alone
                data[key] = (entry[0], entry[1] + 1)
        elif op == "append":
            cap = self.append_cap if arg is None else arg
            if type(cap) is not int or cap < 1:
                raise InvalidWrite("append's cap must be an int >= 1")
            if entry is None:
                data[key] = ([value], 1)
            elif type(entry[0]) is not list:
                raise InvalidWrite(f"append on a {type(entry[0]).__name__} value")
            else:
                items = entry[0]
                items.append(value)
                if len(items) > cap:
                    del items[: len(items) - cap]
                data[key] = (items, entry[1] + 1)
        elif op == "setnx":
            if entry is None:
                data[key] = _stored(value, 1)
            else:
                raise _NoChange
        elif op == "cas":
            if type(arg) is not int or arg < 0:
                raise InvalidWrite("cas needs the expected version as an int >= 0")
            current_version = 0 if entry is None else entry[1]
            if current_version != arg:
                raise _NoChange
            data[key] = _stored(value, current_version + 1)
        elif type(op) is str and op in self._reducers:
            try:
                new = self._reducers[op](None if entry is None else entry[0], value)
            except InvalidWrite:
                raise
            except Exception as exc:  # an app reducer's bug must not stop the partition
                raise InvalidWrite(f"reducer {op!r} raised {type(exc).__name__}: {exc}") from exc
            data[key] = (new, 1) if entry is None else (new, entry[1] + 1)
        else:
            raise InvalidWrite(f"unknown op {op!r}")

    # -- flushing ----------------------------------------------------------
    def take_flush(self) -> FlushBatch:
        """Snapshot what changed since the last flush and reset the dirty set."""
        data = self.data
        changed: list[tuple[str, Entry]] = []
        deleted: list[str] = []
        for key in self.dirty:
            entry = data.get(key)
            if entry is None:
                deleted.append(key)
            else:
                changed.append((key, entry))
        marks = self.watermarks
        batch = FlushBatch(
            partition=self.partition,
            offset=self.applied_offset,
            changed=changed,
            deleted=deleted,
            watermarks={pid: marks[pid] for pid in self.wm_dirty if pid in marks},
            dead=self.dead,
            expired=[pid for pid in self.wm_dirty if pid not in marks],
            horizon=self.horizon,
            gaps={pid: self.gaps.of(pid) for pid in self.gaps_dirty},
        )
        self.wm_dirty = {}
        self.gaps_dirty = {}
        self.dirty = {}
        self.dead = []
        self.pending_writes = 0
        return batch

    def restore_unflushed(self, batch: FlushBatch) -> None:
        """Put back a snapshot whose flush failed, so the next flush retries it."""
        for key, _ in batch.changed:
            self.dirty.setdefault(key, batch.offset)
        for key in batch.deleted:
            self.dirty.setdefault(key, batch.offset)
        for pid in [*batch.watermarks, *batch.expired]:
            self.wm_dirty.setdefault(pid, batch.offset)
        for pid in batch.gaps:
            self.gaps_dirty.setdefault(pid, batch.offset)
        self.dead[:0] = batch.dead

    def prune(self, flushed_offset: int) -> None:
        """Forget changes at or below ``flushed_offset``: another replica flushed them.

        A standby calls this with its primary's flushed offset, so that its
        dirty set holds only what a promotion would still have to flush.
        """
        self.dirty = {k: o for k, o in self.dirty.items() if o > flushed_offset}
        self.wm_dirty = {k: o for k, o in self.wm_dirty.items() if o > flushed_offset}
        self.gaps_dirty = {k: o for k, o in self.gaps_dirty.items() if o > flushed_offset}
        self.dead = [d for d in self.dead if d.offset > flushed_offset]
        self.pending_writes = 0


class _NoChange(InvalidWrite):
    """setnx on a present key, cas on another version: a normal no-op."""


@dataclass
class FlushBatch:
    """What one flush sends to Redis for one partition."""

    partition: int
    offset: int
    changed: list[tuple[str, Entry]]
    deleted: list[str]
    watermarks: dict[str, int]  # the ones that changed since the last flush
    dead: list[DeadLetter]
    expired: list[str] = field(default_factory=list)  # producer ids whose watermark goes
    horizon: int = 0  # see PartitionStore.horizon
    # Producer id → its missing seq ranges, for those whose gaps changed ([]: none left).
    gaps: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.changed or self.deleted or self.dead or self.watermarks
                    or self.expired or self.gaps)
