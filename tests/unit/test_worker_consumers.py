"""A worker consumes again a partition whose stream consumer the broker closed (a node
that restarts answers "no replica on the local node" for a few seconds), and moves to
another node when that keeps happening. No server: a fake connection and channels."""

from __future__ import annotations

from typing import Any

import pytest

from liftline.errors import BrokerError
from liftline.settings import Settings
from liftline.store.memory import PartitionStore
from liftline.workers import partition_worker
from liftline.workers.ownership import PRIMARY, Owned
from liftline.workers.partition_worker import Worker


class FakeChannel:
    def __init__(self) -> None:
        self.is_open = True
        self.consuming: list[tuple[str, Any]] = []
        self._consumer_infos: dict[str, Any] = {}

    def basic_qos(self, prefetch_count: int) -> None:
        pass

    def basic_consume(self, queue: str, callback: Any, arguments: Any) -> None:
        self.consuming.append((queue, arguments))

    def close(self) -> None:
        self.is_open = False


class FakeConnection:
    is_open = True

    def __init__(self) -> None:
        self.channels: list[FakeChannel] = []

    def channel(self) -> FakeChannel:
        self.channels.append(FakeChannel())
        return self.channels[-1]


@pytest.fixture
def worker() -> Worker:
    w = Worker(Settings(redis_url="redis://127.0.0.1:1/0", partitions=4))
    w._connection = FakeConnection()  # type: ignore[assignment]
    store = PartitionStore(2)
    store.applied_offset = 41
    w.ownership.owned[2] = Owned(store, PRIMARY)
    w.consume(2, store)
    return w


def test_a_closed_consumer_is_opened_again_from_where_it_was(worker: Worker) -> None:
    first = worker.consumers[2].channel
    first.is_open = False  # the broker closed it
    worker._revive_consumers(100.0)
    assert worker.consumers[2].channel is first  # waits a moment before trying again
    worker._revive_consumers(100.0 + partition_worker._REVIVE_AFTER_S)
    again = worker.consumers[2].channel
    assert again is not first and again.is_open
    assert again.consuming == [(worker.names.stream(2), {"x-stream-offset": 42})]
    assert worker.consumers[2].failures == 1


def test_a_consumer_closed_again_and_again_makes_the_worker_move_to_another_node(
        worker: Worker) -> None:
    now = 100.0
    with pytest.raises(BrokerError, match="closed 10 times in a row"):
        for _ in range(partition_worker._REVIVE_LIMIT + 1):
            worker.consumers[2].channel.is_open = False
            worker._revive_consumers(now)
            now += partition_worker._REVIVE_AFTER_S
            worker._revive_consumers(now)


def test_a_released_partition_is_not_consumed_again(worker: Worker) -> None:
    worker.consumers[2].channel.is_open = False
    worker.ownership.owned.pop(2)
    worker._revive_consumers(100.0)
    assert 2 not in worker.consumers
