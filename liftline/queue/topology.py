"""Names and declarations of the RabbitMQ objects of one cluster.

Each partition is one stream, bound to the cluster's direct exchange with the
routing key ``p<n>``. Declarations are idempotent; a stream declared earlier
with other arguments is reported, not silently reused.
"""

from __future__ import annotations

from typing import Any

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from liftline.errors import BrokerError
from liftline.settings import Settings


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


def stream_arguments(settings: Settings) -> dict[str, Any]:
    return {
        "x-queue-type": "stream",
        "x-max-length-bytes": settings.stream_max_bytes,
        "x-stream-max-segment-size-bytes": settings.stream_segment_bytes,
    }


def declare(channel: BlockingChannel, settings: Settings) -> Names:
    """Declare the exchange and one stream per partition, bound; idempotent."""
    names = Names(settings.cluster)
    args = stream_arguments(settings)
    try:
        channel.exchange_declare(names.exchange, exchange_type="direct", durable=True)
        for p in range(settings.partitions):
            channel.queue_declare(names.stream(p), durable=True, arguments=args)
            channel.queue_bind(names.stream(p), names.exchange, routing_key=names.routing_key(p))
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise BrokerError(
            f"declaring the topology of cluster {settings.cluster!r} failed: {exc.reply_text}"
            " (a stream may exist with other arguments)"
        ) from exc
    return names
