"""Read a stream's first and last offsets over AMQP.

RabbitMQ 3.10 has no cheap AMQP call for a stream's offsets: a passive declare
reports 0 messages. A consumer at ``first`` gets the oldest retained entry; a
consumer at ``last`` gets the whole last chunk, whose highest offset is the tail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pika
import pika.exceptions

from liftline.errors import BrokerError
from liftline.queue.topology import Names


@dataclass
class StreamBounds:
    """Offsets of a stream: -1 for both when it is empty."""

    first: int = -1
    last: int = -1


def stream_bounds(
    connection: pika.BlockingConnection,
    names: Names,
    partitions: int,
    *,
    idle_s: float = 0.15,
    max_s: float = 3.0,
) -> dict[int, StreamBounds]:
    """First and last offset of every partition's stream, read in one pass."""
    bounds = {p: StreamBounds() for p in range(partitions)}
    last_seen = [time.monotonic()]
    try:
        first_ch = connection.channel()
        first_ch.basic_qos(prefetch_count=1)
        last_ch = connection.channel()
        last_ch.basic_qos(prefetch_count=2000)
        for p in range(partitions):
            def on_first(ch, method, props, body, p=p):  # type: ignore[no-untyped-def]
                if bounds[p].first < 0:
                    bounds[p].first = int(props.headers["x-stream-offset"])
                last_seen[0] = time.monotonic()

            def on_last(ch, method, props, body, p=p):  # type: ignore[no-untyped-def]
                bounds[p].last = max(bounds[p].last, int(props.headers["x-stream-offset"]))
                ch.basic_ack(method.delivery_tag)
                last_seen[0] = time.monotonic()

            first_ch.basic_consume(names.stream(p), on_first,
                                   arguments={"x-stream-offset": "first"})
            last_ch.basic_consume(names.stream(p), on_last,
                                  arguments={"x-stream-offset": "last"})
        started = time.monotonic()
        while time.monotonic() - started < max_s:
            connection.process_data_events(time_limit=0.03)
            if time.monotonic() - last_seen[0] > idle_s:
                break
        first_ch.close()
        last_ch.close()
    except pika.exceptions.AMQPError as exc:
        raise BrokerError(f"reading stream offsets failed: {exc!r}") from exc
    for b in bounds.values():
        if b.last >= 0 and b.first < 0:
            b.first = 0
    return bounds
