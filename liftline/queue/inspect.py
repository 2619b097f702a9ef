"""Read a stream's first and last offsets over AMQP.

RabbitMQ 3.10 has no cheap AMQP call for a stream's offsets: a passive declare
reports 0 messages. A consumer at ``first`` gets the oldest retained entry; a
consumer at ``last`` gets the whole last chunk, whose highest offset is the tail.
Both consumers end by closing their channel without a cancel (see
:func:`~liftline.queue.connection.close_without_cancel`): under write load their
channels hold deliveries, and the reject that a cancel sends for them would make
the stream close the connection.

Each stream gets a channel of its own, so a broker that refuses one stream's
consumer (a node whose replica of it is restarting: "does not have a replica on
the local node") costs that stream's bounds only, reported in its
:attr:`StreamBounds.error`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from liftline.errors import BrokerError, BrokerUnavailable
from liftline.queue.connection import close_without_cancel
from liftline.queue.topology import Names


@dataclass
class StreamBounds:
    """Offsets of a stream: -1 for both when it is empty or unreadable; ``error``
    says why the broker refused to read it (None: read)."""

    first: int = -1
    last: int = -1
    error: str | None = None


def stream_bounds(
    connection: pika.BlockingConnection,
    names: Names,
    partitions: list[int],
    *,
    idle_s: float = 0.15,
    max_s: float = 3.0,
) -> dict[int, StreamBounds]:
    """First and last offset of the stream of each of ``partitions``, read in one pass.

    Returns once every stream has given both bounds, or nothing new came for
    ``idle_s`` (an empty stream sends nothing), and within ``max_s`` in any case.
    The tail is the highest offset seen meanwhile: under load it moves on anyway.
    A stream whose consumer the broker refuses gets its ``error`` set; a fault of
    the connection raises :class:`BrokerUnavailable`.
    """
    bounds = {p: StreamBounds() for p in partitions}
    last_seen = [time.monotonic()]
    channels: dict[int, Any] = {}
    try:
        present = _existing_streams(connection, names, partitions)
        for p in present:
            try:
                channels[p] = _consume_bounds(connection, names.stream(p), bounds[p],
                                              last_seen)
            except pika.exceptions.ChannelClosedByBroker as exc:
                bounds[p].error = f"{exc.reply_code} {exc.reply_text}"
        reading = [p for p in present if bounds[p].error is None]
        started = time.monotonic()
        while time.monotonic() - started < max_s:
            connection.process_data_events(time_limit=0.03)
            if all(bounds[p].first >= 0 and bounds[p].last >= 0 for p in reading):
                # A short grace for the rest of the last chunks already on the way.
                connection.process_data_events(time_limit=0.03)
                break
            if time.monotonic() - last_seen[0] > idle_s:
                break
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise BrokerError(f"reading stream offsets failed: {exc.reply_text}") from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BrokerUnavailable(f"reading stream offsets failed: {exc!r}") from exc
    finally:
        for p, channel in channels.items():
            if channel.is_closed and bounds[p].error is None:
                # Closed by the broker while reading (a replica going away).
                bounds[p] = StreamBounds(error="the broker closed the stream's channel")
            close_without_cancel(channel)
    for b in bounds.values():
        if b.last >= 0 and b.first < 0:
            b.first = 0
    return bounds


def _consume_bounds(connection: pika.BlockingConnection, stream: str, bounds: StreamBounds,
                    last_seen: list[float]) -> Any:
    """A channel with two consumers on ``stream``, at its first and its last chunk,
    that fill ``bounds``; prefetch is per consumer, so each gets its own."""
    channel = connection.channel()
    try:
        def on_first(ch, method, props, body):  # type: ignore[no-untyped-def]
            if bounds.first < 0:
                bounds.first = int(props.headers["x-stream-offset"])
            last_seen[0] = time.monotonic()

        def on_last(ch, method, props, body):  # type: ignore[no-untyped-def]
            bounds.last = max(bounds.last, int(props.headers["x-stream-offset"]))
            ch.basic_ack(method.delivery_tag)
            last_seen[0] = time.monotonic()

        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(stream, on_first, arguments={"x-stream-offset": "first"})
        # The last chunk arrives whole whatever the prefetch; more than that is not
        # needed, and what is in flight is dropped with the channel.
        channel.basic_qos(prefetch_count=200)
        channel.basic_consume(stream, on_last, arguments={"x-stream-offset": "last"})
    except BaseException:
        close_without_cancel(channel)
        raise
    return channel


def _existing_streams(connection: pika.BlockingConnection, names: Names,
                      partitions: list[int]) -> list[int]:
    """The partitions whose stream exists (a cluster nothing has written to has none):
    a consumer on a missing stream would close the channel of every other one."""
    present = []
    channel = connection.channel()
    try:
        for p in partitions:
            try:
                channel.queue_declare(names.stream(p), passive=True)
                present.append(p)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                channel = connection.channel()  # the broker closed the last one
    finally:
        if channel.is_open:
            channel.close()
    return present
