"""A partition's stream fed to a PartitionStore, and reducers, for the store's unit tests."""

from __future__ import annotations

import copy
from typing import Any

from liftline.errors import InvalidWrite
from liftline.store.memory import PartitionStore, unpack_entry


class Stream:
    """Feeds batches to a store at increasing stream offsets, as a worker would."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.offset = -1
        self.next_seq: dict[str, int] = {}

    def send(self, *writes: Any, producer: str = "p") -> int:
        """One new batch from ``producer`` with the next sequence numbers."""
        first_seq = self.next_seq.get(producer, 1)
        self.next_seq[producer] = first_seq + len(writes)
        return self.at(first_seq, *writes, producer=producer)

    def at(self, first_seq: int, *writes: Any, producer: str = "p") -> int:
        """A batch with an explicit first_seq (a republish) at the next offset."""
        self.offset += 1
        return self.store.apply_batch(self.offset, producer, first_seq, copy.deepcopy(list(writes)))


def values(store: PartitionStore) -> dict[str, Any]:
    return {key: unpack_entry(entry)[0] for key, entry in store.data.items()}


def decoded(entries: Any) -> dict[str, list[Any]]:
    """Key → [value, version] of a store's data or a flush's changes (packed or not)."""
    items = entries.items() if isinstance(entries, dict) else entries
    return {key: list(unpack_entry(entry)) for key, entry in items}


def keep_max(current: Any, value: Any) -> Any:
    return value if current is None else max(current, value)


def explode(current: Any, value: Any) -> Any:
    raise ZeroDivisionError("reducer bug")


def refuse(current: Any, value: Any) -> Any:
    raise InvalidWrite("value not allowed")
