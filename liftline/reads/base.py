"""The reader contract: what a read returns and the errors only reads raise."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

from liftline.errors import Timeout
from liftline.tickets import Ticket


@dataclass(frozen=True)
class ReadResult:
    """A key's value as its owner or Redis sees it."""

    key: str
    found: bool
    value: Any
    version: int
    partition: int
    offset: int  # the stream offset the answer reflects (-1: unknown)
    source: str  # "owner:<member id>" or "redis"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "found": self.found, "value": self.value,
                "version": self.version, "partition": self.partition,
                "offset": self.offset, "source": self.source}


@dataclass(frozen=True)
class TicketStatus:
    """Where a write is: ``queued`` (not applied by a live owner), ``applied`` (in
    the owner's memory), ``persisted`` (flushed to Redis), or ``expired``: its
    producer id is older than the cluster's ``producer_id_ttl_s``, so whether it
    was applied is too old to tell (nothing of it can be applied any more; a write
    refused for it is in the dead letters)."""

    ticket: Ticket
    status: Literal["queued", "applied", "persisted", "expired"]
    persisted_seq: int  # the producer's watermark in Redis
    applied_seq: int | None  # the producer's watermark at the owner (None: no answer)

    def to_dict(self) -> dict[str, Any]:
        return {"ticket": str(self.ticket), "partition": self.ticket.partition,
                "status": self.status, "persisted_seq": self.persisted_seq,
                "applied_seq": self.applied_seq}


class NotApplied(Timeout):
    """The awaited write was not applied within the timeout; carries the owner's position."""

    def __init__(self, ticket: Ticket, applied_seq: int | None, applied_offset: int | None,
                 timeout_ms: int) -> None:
        super().__init__(f"write {ticket} not applied within {timeout_ms} ms (the owner has "
                         f"applied offset {applied_offset}, producer seq {applied_seq})")
        self.ticket = ticket
        self.applied_seq = applied_seq
        self.applied_offset = applied_offset

    @property
    def position(self) -> dict[str, Any]:
        """``{"applied_seq", "applied_offset"}`` of the ticket's partition at its owner."""
        return {"applied_seq": self.applied_seq, "applied_offset": self.applied_offset}


class Reader(abc.ABC):
    """Reads keys at some consistency level."""

    @abc.abstractmethod
    def get(self, key: str, *, after: Ticket | None = None,
            timeout_ms: int = 2000) -> ReadResult:
        """The value of ``key``; with ``after``, only once that write is applied."""

    @abc.abstractmethod
    def get_many(self, keys: list[str]) -> dict[str, ReadResult]:
        """The values of ``keys`` (each once), by key."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""
