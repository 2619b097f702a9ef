"""pika connection parameters, the node list, and a bounded blocking connect.

``amqp_url`` may name several RabbitMQ nodes (comma-separated). Every
connection starts at a node picked at random (so clients spread over the
cluster) and, when it cannot connect or loses its node, moves on to the next one
in the list: a round over all nodes per attempt of the retry policy.

pika connections are not thread-safe: every thread (and every process, after
fork) opens its own.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from liftline.errors import BrokerUnavailable
from liftline.retry import RetryPolicy
from liftline.settings import Settings, mask_url

log = logging.getLogger(__name__)


def parameters(url: str, *, heartbeat: int = 30, name: str = "liftline",
               timeout_s: float | None = None) -> pika.URLParameters:
    """Connection parameters with a heartbeat and a bound on blocked connections.

    ``timeout_s`` bounds the TCP connect and the AMQP handshake (default 5 s and
    pika's 15 s): a server that accepts and then never answers ends there.
    """
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    # A broker in a memory or disk alarm blocks publishers; give up after this long.
    params.blocked_connection_timeout = 30
    params.socket_timeout = timeout_s or 5
    if timeout_s is not None:
        params.stack_timeout = timeout_s
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    return params


class Nodes:
    """The RabbitMQ nodes of ``settings.amqp_url``, handed out in turn from a random start.

    :meth:`next` gives the node to try now; after a failure the next call gives the
    following node, so a dead node costs one refused connect, not the whole budget.
    """

    def __init__(self, settings: Settings, *, rng: random.Random | None = None) -> None:
        self.urls = settings.amqp_nodes
        self._next = (rng or random).randrange(len(self.urls))
        self.current = self.urls[self._next]

    def __len__(self) -> int:
        return len(self.urls)

    def next(self) -> str:
        self.current = self.urls[self._next % len(self.urls)]
        self._next += 1
        return self.current

    def round(self) -> list[str]:
        """One pass over every node, starting where :meth:`next` would."""
        return [self.next() for _ in self.urls]


def policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.reconnect_attempts,
        base_s=settings.reconnect_backoff_s,
        cap_s=settings.reconnect_backoff_max_s,
    )


def connect_blocking(
    settings: Settings, *, name: str = "liftline", attempts: int | None = None,
    timeout_s: float | None = None, nodes: Nodes | None = None,
) -> pika.BlockingConnection:
    """A BlockingConnection to a live node, retried with bounded backoff;
    BrokerUnavailable after that.

    Each attempt tries every node once (from a random start, or where ``nodes``
    left off); the backoff comes between rounds. ``attempts`` and ``timeout_s``
    (per node and attempt) bound the wait: commands that answer a person pass few
    attempts and a short timeout.
    """
    retry = policy(settings)
    tries = attempts or retry.attempts
    order = nodes or Nodes(settings)
    last: Exception | None = None
    for attempt in range(tries):
        for _ in range(len(order)):
            url = order.next()  # one at a time: a reconnect goes on after the node that worked
            try:
                conn = pika.BlockingConnection(parameters(url, name=name, timeout_s=timeout_s))
            # A handshake that times out raises pika's connector error, not an AMQPError.
            except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
                last = exc
                if len(order) > 1:
                    log.info("RabbitMQ node %s unreachable (%s)", mask_url(url), exc)
                continue
            if attempt or last is not None:
                log.info("connected to RabbitMQ node %s", mask_url(url))
            return conn
        if attempt + 1 < tries:
            delay = retry.delay(attempt)
            log.warning("RabbitMQ at %s unreachable (%s); retrying in %.2fs",
                        mask_url(settings.amqp_url), last, delay)
            time.sleep(delay)
    raise BrokerUnavailable(
        f"RabbitMQ at {mask_url(settings.amqp_url)} unreachable after {tries} attempts: {last!r}"
    ) from last


def close_without_cancel(channel: Any) -> None:
    """Close a consuming channel without cancelling its consumers first.

    What it has in flight goes back to the broker unsettled: a queue delivers it
    again, a stream simply keeps it. This matters for streams:

    ``BlockingChannel.close()`` first cancels its consumers, and pika then rejects
    the deliveries it still buffers; a stream does not support reject or nack and
    answers by closing the whole connection (540 NOT_IMPLEMENTED). So the consumers
    are forgotten instead, and closing the channel ends them. Never raises.
    """
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        if channel.is_open:
            channel._consumer_infos.clear()
            channel.close()
