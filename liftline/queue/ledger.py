"""What one publishing channel sent, and which of its confirms may be believed.

RabbitMQ 3.10.8 drops a channel's in-flight publishes to a stream whose leader
dies without ever confirming them, and then confirms the channel's later
publishes to that stream without storing them (measured on this machine: 1,647
confirmed, none stored, all sent after the first publish left unconfirmed). A
confirm is therefore believed only once every earlier publish on the same
channel has been answered: the ledger hands out acknowledged batches in tag
order, and holds an ack that overtook an unanswered publish. When the publisher
gives the channel up (a publish stalls, a nack, a lost connection),
:meth:`Ledger.abandon` returns everything not yet handed out, held acks
included, to be sent again on a fresh channel; the producer sequence numbers
make the second copy harmless. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

from liftline.queue.batch import Batch

UNANSWERED, ACKED, NACKED = 0, 1, 2


class Entry:
    """One publish: its batch, when it went out, and the broker's answer so far."""

    __slots__ = ("batch", "sent_at", "state")

    def __init__(self, batch: Batch, sent_at: float) -> None:
        self.batch = batch
        self.sent_at = sent_at
        self.state = UNANSWERED


class Ledger:
    """The publishes of one channel in delivery-tag order (confirm mode counts from 1)."""

    def __init__(self) -> None:
        self._entries: dict[int, Entry] = {}  # insertion order is tag order
        self.next_tag = 1

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def add(self, batch: Batch, now: float) -> int:
        """Record the publish of ``batch``; returns its delivery tag."""
        tag = self.next_tag
        self._entries[tag] = Entry(batch, now)
        self.next_tag += 1
        return tag

    def answer(self, tag: int, multiple: bool, nack: bool) -> None:
        """Record an ack or nack of ``tag`` (and of every earlier tag if ``multiple``)."""
        state = NACKED if nack else ACKED
        if not multiple:
            entry = self._entries.get(tag)
            if entry is not None and entry.state == UNANSWERED:
                entry.state = state
            return
        for t, entry in self._entries.items():
            if t > tag:
                break
            if entry.state == UNANSWERED:
                entry.state = state

    def trusted(self) -> list[Batch]:
        """Remove and return, in tag order, the acked publishes no unanswered or
        nacked publish precedes: the only acks that mean stored."""
        out: list[Batch] = []
        entries = self._entries
        while entries:
            tag = next(iter(entries))
            entry = entries[tag]
            if entry.state != ACKED:
                break
            del entries[tag]
            out.append(entry.batch)
        return out

    @property
    def nacked(self) -> list[Batch]:
        """The batches nacked on this channel (not yet handed out)."""
        return [e.batch for e in self._entries.values() if e.state == NACKED]

    def stalled_for(self, now: float) -> float:
        """How long the oldest publish has waited for its answer (0 if none waits)."""
        for entry in self._entries.values():
            if entry.state == UNANSWERED:
                return now - entry.sent_at
            if entry.state == NACKED:
                return 0.0
        return 0.0

    def restart_clock(self, now: float) -> None:
        """Count every unanswered publish as sent ``now`` (a broker that blocked the
        connection read nothing meanwhile: the wait for its answer starts over)."""
        for entry in self._entries.values():
            if entry.state == UNANSWERED:
                entry.sent_at = now

    def abandon(self) -> tuple[list[Batch], int]:
        """Give the channel up: (every batch not handed out, in tag order, the number
        of them the broker had acked). The ledger is empty afterwards."""
        batches = [e.batch for e in self._entries.values()]
        acked = sum(e.state == ACKED for e in self._entries.values())
        self._entries.clear()
        return batches, acked
