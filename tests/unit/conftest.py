"""Fixtures of the unit tests: a PartitionStore and the stream that feeds it."""

from __future__ import annotations

import pytest
from partition_stream import Stream

from liftline.store.memory import PartitionStore


@pytest.fixture
def store() -> PartitionStore:
    return PartitionStore(3)


@pytest.fixture
def stream(store: PartitionStore) -> Stream:
    return Stream(store)
