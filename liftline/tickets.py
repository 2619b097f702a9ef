"""Tickets: the proof a write was confirmed, and where to find it again.

A value type shared by the producer, the readers, the HTTP service and the
workers, so it lives in the core (no broker, no Redis).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import NamedTuple

from liftline.errors import InvalidWrite

# A producer id liftline makes: its creation time (8 hex digits of Unix seconds),
# a dash, 12 random hex digits. Workers expire such ids by that time; an id of
# any other form is the caller's and never expires.
_TIMED_ID = re.compile(r"([0-9a-f]{8})-[0-9a-f]{12}")


def new_producer_id(now: float | None = None) -> str:
    """A fresh producer id that carries its creation time (see :func:`id_created`)."""
    return f"{int(time.time() if now is None else now):08x}-{secrets.token_hex(6)}"


def id_created(producer_id: str) -> int | None:
    """The creation time (Unix seconds) of an id from :func:`new_producer_id`, else None."""
    found = _TIMED_ID.fullmatch(producer_id)
    return None if found is None else int(found.group(1), 16)


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
