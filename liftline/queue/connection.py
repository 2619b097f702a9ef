"""pika connection parameters and a bounded blocking connect.

pika connections are not thread-safe: every thread (and every process, after
fork) opens its own.
"""

from __future__ import annotations

import logging
import time

import pika
import pika.exceptions

from liftline.errors import BrokerUnavailable
from liftline.retry import RetryPolicy
from liftline.settings import Settings, mask_url

log = logging.getLogger(__name__)


def parameters(url: str, *, heartbeat: int = 30, name: str = "liftline") -> pika.URLParameters:
    """Connection parameters with a heartbeat and a bound on blocked connections."""
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    # A broker in a memory or disk alarm blocks publishers; give up after this long.
    params.blocked_connection_timeout = 30
    params.socket_timeout = 5
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    return params


def policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.reconnect_attempts,
        base_s=settings.reconnect_backoff_s,
        cap_s=settings.reconnect_backoff_max_s,
    )


def connect_blocking(
    settings: Settings, *, name: str = "liftline", attempts: int | None = None
) -> pika.BlockingConnection:
    """A BlockingConnection, retried with bounded backoff; BrokerUnavailable after that."""
    retry = policy(settings)
    tries = attempts or retry.attempts
    last: Exception | None = None
    for attempt in range(tries):
        try:
            return pika.BlockingConnection(parameters(settings.amqp_url, name=name))
        except (pika.exceptions.AMQPError, OSError) as exc:
            last = exc
            if attempt + 1 < tries:
                delay = retry.delay(attempt)
                log.warning("RabbitMQ at %s unreachable (%s); retrying in %.2fs",
                            mask_url(settings.amqp_url), exc, delay)
                time.sleep(delay)
    raise BrokerUnavailable(
        f"RabbitMQ at {mask_url(settings.amqp_url)} unreachable after {tries} attempts: {last!r}"
    ) from last
