"""Node lists without a server: the order nodes are tried in, the blocking connect's
rounds over them, and the declares that keep a queue made with another replica count."""

from __future__ import annotations

import random
from typing import Any

import pika
import pika.exceptions
import pytest

from liftline.errors import BrokerUnavailable
from liftline.queue import connection
from liftline.queue.connection import Nodes, connect_blocking
from liftline.queue.topology import declare_queue, placement_arguments, stream_arguments
from liftline.settings import Settings

URLS = [f"amqp://guest:guest@127.0.0.1:{port}/%2F" for port in (5601, 5602, 5603)]
THREE = Settings(amqp_url=",".join(URLS), reconnect_attempts=3, reconnect_backoff_s=0.01,
                 reconnect_backoff_max_s=0.02)


def test_nodes_start_at_a_random_node_and_go_round_in_order() -> None:
    starts = {Nodes(THREE, rng=random.Random(seed)).next() for seed in range(40)}
    assert starts == set(URLS)  # clients spread over the cluster
    nodes = Nodes(THREE, rng=random.Random(1))
    first = nodes.next()
    after = [nodes.next() for _ in range(5)]
    i = URLS.index(first)
    assert after == [URLS[(i + k) % 3] for k in range(1, 6)]
    assert nodes.round() == [URLS[(i + k) % 3] for k in range(6, 9)]
    assert nodes.current == URLS[(i + 8) % 3]
    assert len(Nodes(Settings())) == 1


class FakeBroker:
    """Stands in for pika.BlockingConnection: nodes listed in ``down`` refuse."""

    def __init__(self, down: set[int]) -> None:
        self.down = down
        self.tried: list[int] = []

    def __call__(self, params: pika.URLParameters) -> Any:
        self.tried.append(params.port)
        if params.port in self.down:
            raise pika.exceptions.AMQPConnectionError("refused")
        return f"connection to {params.port}"


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker(set())
    monkeypatch.setattr(connection.pika, "BlockingConnection", fake)
    slept: list[float] = []
    monkeypatch.setattr(connection.time, "sleep", slept.append)
    fake.slept = slept  # type: ignore[attr-defined]
    return fake


def test_a_dead_node_costs_one_refused_connect_not_a_backoff(broker: FakeBroker) -> None:
    nodes = Nodes(THREE, rng=random.Random(0))
    start = URLS.index(nodes.urls[nodes._next])
    broker.down = {5601 + start}
    assert connect_blocking(THREE, nodes=nodes) == f"connection to {5601 + (start + 1) % 3}"
    assert broker.tried == [5601 + start, 5601 + (start + 1) % 3]
    assert broker.slept == []  # type: ignore[attr-defined]
    # The next connect (a reconnect) goes on from the node after the one that worked.
    broker.tried.clear()
    connect_blocking(THREE, nodes=nodes)
    assert broker.tried == [5601 + (start + 2) % 3]


def test_with_every_node_down_each_attempt_is_a_round_then_the_budget_ends(
        broker: FakeBroker) -> None:
    broker.down = {5601, 5602, 5603}
    with pytest.raises(BrokerUnavailable, match="unreachable after 3 attempts"):
        connect_blocking(THREE)
    assert sorted(broker.tried) == sorted([5601, 5602, 5603] * 3)
    assert len(broker.slept) == 2  # type: ignore[attr-defined]  # between rounds only


# -- replicated declarations -------------------------------------------------------------

def test_replica_count_and_balanced_leaders_only_on_a_cluster() -> None:
    assert placement_arguments(Settings()) == {}
    assert placement_arguments(THREE) == {"x-initial-cluster-size": 3,
                                          "x-queue-leader-locator": "balanced"}
    assert placement_arguments(THREE, quorum=True) == {"x-quorum-initial-group-size": 3,
                                                       "x-queue-leader-locator": "balanced"}
    assert stream_arguments(THREE)["x-initial-cluster-size"] == 3
    assert "x-initial-cluster-size" not in stream_arguments(Settings())


class FakeChannel:
    """A channel whose declare RabbitMQ refuses (as it does: by closing the channel)."""

    def __init__(self, owner: FakeConnection, refusal: tuple[int, str] | None) -> None:
        self.connection = owner
        self.refusal = refusal
        self.declared: list[tuple[str, bool]] = []

    def queue_declare(self, name: str, passive: bool = False, **_: Any) -> None:
        self.declared.append((name, passive))
        if self.refusal and not passive:
            raise pika.exceptions.ChannelClosedByBroker(*self.refusal)


class FakeConnection:
    def __init__(self) -> None:
        self.channels: list[FakeChannel] = []

    def channel(self) -> FakeChannel:
        self.channels.append(FakeChannel(self, None))
        return self.channels[-1]


def test_a_queue_made_with_another_replica_count_is_used_as_it_is() -> None:
    conn = FakeConnection()
    refused = FakeChannel(conn, (406, "PRECONDITION_FAILED - inequivalent arg "
                                     "'x-initial-cluster-size' for queue 'q' in vhost '/': "
                                     "received the value '3' of type 'signedint' but current "
                                     "is none"))
    kept: list[str] = []
    channel = declare_queue(refused, "q", {"x-initial-cluster-size": 3}, kept)
    assert channel is conn.channels[-1] and channel.declared == [("q", True)]
    assert kept == ["q"]


def test_any_other_difference_is_still_refused() -> None:
    refused = FakeChannel(FakeConnection(), (406, "PRECONDITION_FAILED - inequivalent arg "
                                                  "'x-max-length-bytes' for queue 'q'"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        declare_queue(refused, "q", {})
