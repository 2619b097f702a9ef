"""Follow every partition stream and count the writes in each entry.

A stream offset counts entries, and an entry is a producer batch of 1 to 2,000
writes, so ``tail − applied`` in offsets says little about the work left.
:class:`StreamTails` reads each stream from the oldest offset a worker may still
need, decodes only the batch header of each entry (the write count) and keeps
``offset → writes so far`` for the entries not yet applied, so that

    writes behind = writes up to the tail − writes up to the primary's applied offset

is exact. Reading costs the broker one more stream reader per partition; the
bodies are not decoded past their first few bytes.
"""

from __future__ import annotations

import bisect
import logging
from array import array
from typing import Any

import msgpack
import pika
import pika.exceptions

from liftline.queue.connection import close_without_cancel
from liftline.queue.topology import Names

log = logging.getLogger(__name__)

PREFETCH = 2000
_TRIM_AT = 4096  # drop applied entries once this many have piled up


def writes_in(body: bytes) -> int:
    """How many writes a batch entry carries (1 for anything that is not a batch:
    a worker still spends one apply on it, as a dead letter)."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1024)
    unpacker.feed(body[:256])
    try:
        if unpacker.read_array_header() != 5:
            return 1
        for _ in range(4):  # version, "w", producer id, first seq
            unpacker.skip()
        return max(1, int(unpacker.read_array_header()))
    except Exception:  # msgpack raises several unrelated types on garbage
        return 1


class _Tail:
    """Entries of one stream seen so far: offsets and running write totals."""

    def __init__(self) -> None:
        self.offsets = array("q")
        self.totals = array("q")  # writes in every seen entry up to and including this one
        self.base = 0  # writes in entries trimmed away

    @property
    def last(self) -> int:
        return self.offsets[-1] if self.offsets else -1

    def add(self, offset: int, writes: int) -> None:
        if offset <= self.last:
            return  # a redelivery after a resubscribe
        total = (self.totals[-1] if self.totals else self.base) + writes
        self.offsets.append(offset)
        self.totals.append(total)

    def writes_after(self, applied: int) -> int | None:
        """Writes in entries after ``applied``; None if entries before ours are missing."""
        if not self.offsets:
            return 0
        if applied < self.offsets[0] - 1:
            return None
        i = bisect.bisect_right(self.offsets, applied)
        before = self.totals[i - 1] if i else self.base
        return int(self.totals[-1] - before)

    def mean_writes(self) -> float:
        if not self.offsets:
            return 1.0
        return max(1.0, (self.totals[-1] - self.base) / len(self.offsets))

    def trim(self, keep_after: int) -> None:
        """Forget entries at or below ``keep_after`` (every worker is past them)."""
        i = bisect.bisect_right(self.offsets, keep_after)
        if i < _TRIM_AT:
            return
        self.base = self.totals[i - 1]
        del self.offsets[:i]
        del self.totals[:i]


class StreamTails:
    """One consumer per partition stream on a channel of the caller's connection.

    Single-threaded: call :meth:`on_events` after ``process_data_events`` (it acks
    the prefetch credit). Never nacks: a stream answers a nack by closing the
    connection.
    """

    def __init__(self, names: Names, partitions: int) -> None:
        self.names = names
        self.partitions = partitions
        self.tails = {p: _Tail() for p in range(partitions)}
        self._channel: Any = None
        self._last_tag = 0
        self._acked_tag = 0

    def attach(self, connection: pika.BlockingConnection, start: dict[int, int]) -> None:
        """Subscribe every stream after what was seen, else from ``start[p]`` (an offset)."""
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        for p in range(self.partitions):
            seen = self.tails[p].last
            offset = seen + 1 if seen >= 0 else max(0, start.get(p, 0))
            channel.basic_consume(self.names.stream(p), self._on_entry(p),
                                  arguments={"x-stream-offset": offset})
        self._channel = channel
        self._last_tag = self._acked_tag = 0

    def _on_entry(self, partition: int) -> Any:
        tail = self.tails[partition]

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            self._last_tag = method.delivery_tag
            headers = props.headers or {}
            if "x-stream-offset" in headers:
                tail.add(int(headers["x-stream-offset"]), writes_in(body))
        return on_message

    def on_events(self) -> None:
        if self._channel is not None and self._last_tag > self._acked_tag:
            self._channel.basic_ack(self._last_tag, multiple=True)
            self._acked_tag = self._last_tag

    def detach(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            close_without_cancel(channel)

    def seen(self) -> int:
        """Entries read so far (all partitions)."""
        return sum(len(t.offsets) for t in self.tails.values())

    def behind(self, partition: int, applied: int) -> tuple[int, int]:
        """(entries, writes) in the stream after offset ``applied``."""
        tail = self.tails[partition]
        entries = max(0, tail.last - applied)
        writes = tail.writes_after(applied)
        if writes is None:  # older entries than we read: estimate those
            missing = tail.offsets[0] - applied - 1
            writes = int(missing * tail.mean_writes()) + (tail.writes_after(tail.offsets[0] - 1)
                                                          or 0)
        return entries, writes

    def trim(self, keep_after: dict[int, int]) -> None:
        for p, offset in keep_after.items():
            if p in self.tails:
                self.tails[p].trim(offset)
