"""Names and declarations of the RabbitMQ objects of one cluster.

Each partition is one stream, bound to the cluster's direct exchange with the
routing key ``p<n>``. Declarations are idempotent; a stream declared earlier
with other arguments is reported, not silently reused, except for its replica
count and leader placement (see :func:`declare_queue`).

In a RabbitMQ cluster each stream (and each quorum job queue) is declared with
``Settings.resolved_stream_replicas()`` replicas (min(3, nodes) by default) and
its leader placed on the node leading the fewest (``balanced``), so the leaders
of the partitions spread over the nodes.
"""

from __future__ import annotations

import logging
from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from liftline.errors import BrokerError
from liftline.settings import Settings

log = logging.getLogger(__name__)

# Arguments a queue may have been created with otherwise (by a client that saw
# another node count, or before liftline set them): such a queue is used as it is.
_PLACEMENT_ARGS = ("x-initial-cluster-size", "x-quorum-initial-group-size",
                   "x-queue-leader-locator")


class Names:
    """RabbitMQ names of one cluster namespace."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.exchange = f"liftline.{cluster}.writes"

    def stream(self, partition: int) -> str:
        return f"liftline.{self.cluster}.p{partition}"

    @staticmethod
    def routing_key(partition: int) -> str:
        return f"p{partition}"

    def rpc_queue(self, member_id: str) -> str:
        return f"liftline.{self.cluster}.rpc.{member_id}"


def placement_arguments(settings: Settings, *, quorum: bool = False) -> dict[str, Any]:
    """Replica count and leader placement of a replicated queue; none on one node."""
    replicas = settings.resolved_stream_replicas()
    if replicas <= 1:
        return {}
    size = "x-quorum-initial-group-size" if quorum else "x-initial-cluster-size"
    return {size: replicas, "x-queue-leader-locator": "balanced"}


def stream_arguments(settings: Settings) -> dict[str, Any]:
    return {
        "x-queue-type": "stream",
        "x-max-length-bytes": settings.stream_max_bytes,
        "x-stream-max-segment-size-bytes": settings.stream_segment_bytes,
        **placement_arguments(settings),
    }


def declare_queue(channel: Any, name: str, arguments: dict[str, Any],
                  kept: list[str] | None = None) -> Any:
    """Declare a durable queue; returns the channel to go on with.

    A queue that exists with another replica count or leader placement is kept
    as it is (RabbitMQ refuses the declare and closes the channel; the queue is
    then checked passively on a new channel, which is returned, and its name
    appended to ``kept``). Any other difference raises ChannelClosedByBroker.
    """
    try:
        channel.queue_declare(name, durable=True, arguments=arguments)
        return channel
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406 or not any(a in exc.reply_text for a in _PLACEMENT_ARGS):
            raise
    channel = channel.connection.channel()
    channel.queue_declare(name, passive=True)
    if kept is not None:
        kept.append(name)
    return channel


def report_kept(kept: list[str]) -> None:
    if kept:
        log.warning("%d queues exist with another replica count or leader placement than "
                    "this client's (e.g. %s); they are used as they are", len(kept), kept[0])


def declare(channel: BlockingChannel, settings: Settings) -> Names:
    """Declare the exchange and one stream per partition, bound; idempotent."""
    names = Names(settings.cluster)
    args = stream_arguments(settings)
    kept: list[str] = []
    try:
        channel.exchange_declare(names.exchange, exchange_type="direct", durable=True)
        for p in range(settings.partitions):
            channel = declare_queue(channel, names.stream(p), args, kept)
            channel.queue_bind(names.stream(p), names.exchange, routing_key=names.routing_key(p))
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise BrokerError(
            f"declaring the topology of cluster {settings.cluster!r} failed: {exc.reply_text}"
            " (a stream may exist with other arguments)"
        ) from exc
    report_kept(kept)
    return names
