"""Tickets: the proof a write was confirmed, and where to find it again.

A value type shared by the producer, the readers, the HTTP service and the
workers, so it lives in the core (no broker, no Redis).
"""

from __future__ import annotations

from typing import NamedTuple

from liftline.errors import InvalidWrite


class Ticket(NamedTuple):
    """Proof that RabbitMQ confirmed a write: where it is and its sequence number."""

    partition: int
    producer_id: str
    seq: int

    def __str__(self) -> str:
        return f"{self.partition}.{self.producer_id}.{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Ticket:
        """The ticket written as ``partition.producer_id.seq``; InvalidWrite otherwise."""
        # The producer id may hold dots: the partition is before the first, seq after the last.
        head, _, rest = text.strip().partition(".")
        producer_id, _, tail = rest.rpartition(".")
        try:
            partition, seq = int(head), int(tail)
        except ValueError as exc:
            raise InvalidWrite(f"not a ticket: {text!r} (expected partition.producer.seq)") from exc
        if partition < 0 or seq < 1 or not producer_id:
            raise InvalidWrite(f"not a ticket: {text!r} (expected partition.producer.seq)")
        return cls(partition, producer_id, seq)
