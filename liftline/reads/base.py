"""The reader contract."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from liftline.tickets import Ticket


@dataclass(frozen=True)
class ReadResult:
    """A key's value as one replica or Redis sees it."""

    key: str
    found: bool
    value: Any
    version: int
    partition: int
    offset: int  # the stream offset the answer reflects (-1: unknown)
    source: str  # "owner:<member>" or "redis"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "found": self.found, "value": self.value,
                "version": self.version, "partition": self.partition,
                "offset": self.offset, "source": self.source}


class Reader(abc.ABC):
    """Reads keys at some consistency level."""

    @abc.abstractmethod
    def get(self, key: str, *, after: Ticket | None = None,
            timeout_ms: int = 2000) -> ReadResult:
        """The value of ``key``; with ``after``, only once that write is applied."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""
