"""Sequence numbers a partition has not seen, per producer: gaps in its stream.

A producer numbers its writes to each partition 1, 2, 3… and publishes them in
that order, so a batch that starts past its producer's watermark + 1 means the
writes between never reached the stream, or not yet: RabbitMQ lost them (or
confirmed them without storing them), or they failed and their producer was told
so, or they were sent again after a later batch got through. The partition
records the missing range and applies the batch. A copy that arrives later (a
re-send) fills the range: its writes are applied then, after the ones that
overtook them, and only once. Pure bookkeeping, deterministic: every replica of
the partition sees the same gaps at the same offsets.
"""

from __future__ import annotations

# Open ranges kept per producer id; when a new one would pass this, the oldest is
# given up (it stays reported in the dead letters; a late copy of it is then skipped).
MAX_RANGES = 16


class Gaps:
    """Producer id → its missing seqs as sorted, disjoint ``[first, last]`` ranges,
    all below its watermark."""

    def __init__(self, ranges: dict[str, list[list[int]]] | None = None) -> None:
        self.ranges: dict[str, list[list[int]]] = {
            pid: [list(r) for r in rs] for pid, rs in (ranges or {}).items() if rs}

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def of(self, producer_id: str) -> list[list[int]]:
        return self.ranges.get(producer_id, [])

    def missing(self) -> int:
        """How many seqs are missing over all producers."""
        return sum(hi - lo + 1 for rs in self.ranges.values() for lo, hi in rs)

    def holds(self, producer_id: str, seq: int) -> bool:
        """Whether ``seq`` of ``producer_id`` is missing."""
        return any(lo <= seq <= hi for lo, hi in self.ranges.get(producer_id, ()))

    def open(self, producer_id: str, first: int, last: int) -> list[int] | None:
        """Record ``first..last`` as missing (above every range it has); returns the
        range given up to stay within MAX_RANGES, if one was."""
        ranges = self.ranges.setdefault(producer_id, [])
        ranges.append([first, last])
        if len(ranges) > MAX_RANGES:
            return ranges.pop(0)
        return None

    def fill(self, producer_id: str, first: int, count: int) -> list[int]:
        """Take the seqs ``first..first+count-1`` out of the missing ones; returns
        the indices (0-based from ``first``) of those that were missing, in order."""
        ranges = self.ranges.get(producer_id)
        if not ranges or count <= 0:
            return []
        last = first + count - 1
        found: list[int] = []
        kept: list[list[int]] = []
        for lo, hi in ranges:
            a, b = max(lo, first), min(hi, last)
            if a > b:
                kept.append([lo, hi])
                continue
            found.extend(range(a - first, b - first + 1))
            if lo < a:
                kept.append([lo, a - 1])
            if b < hi:
                kept.append([b + 1, hi])
        if kept:
            self.ranges[producer_id] = kept
        else:
            del self.ranges[producer_id]
        return found

    def forget(self, producer_ids: list[str]) -> None:
        """Drop the gaps of these (expired) producer ids."""
        for pid in producer_ids:
            self.ranges.pop(pid, None)
