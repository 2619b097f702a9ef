"""Servers someone else runs, given by URL (CI services, a developer's own stack)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pika
import pika.exceptions
import redis

from liftline.errors import ServerError
from liftline.servers.base import Endpoints, ServerProvider


class UrlServers(ServerProvider):
    """Wraps existing servers: ``start()`` checks both answer, ``stop()`` leaves them be.

    ``start()`` retries for up to ``timeout_s`` (a CI service may still be
    booting) and raises ServerError naming the server that never answered.
    """

    def __init__(
        self,
        amqp_url: str,
        redis_url: str,
        management_url: str | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.amqp_url = amqp_url
        self.redis_url = redis_url
        self.management_url = management_url
        self.timeout_s = timeout_s

    def _start(self) -> Endpoints:
        deadline = time.monotonic() + self.timeout_s
        self._retry(self._check_amqp, deadline, "RabbitMQ", self.amqp_url)
        self._retry(self._check_redis, deadline, "Redis", self.redis_url)
        return Endpoints(self.amqp_url, self.redis_url, self.management_url)

    def _stop(self) -> None:
        pass

    @staticmethod
    def _retry(check: Callable[[], None], deadline: float, name: str, url: str) -> None:
        while True:
            try:
                check()
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise ServerError(f"{name} at {_mask(url)} does not answer: {exc!r}") from exc
            time.sleep(0.5)

    def _check_amqp(self) -> None:
        params = pika.URLParameters(self.amqp_url)
        params.connection_attempts = 1
        params.socket_timeout = 5.0
        pika.BlockingConnection(params).close()

    def _check_redis(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5.0)
        try:
            client.ping()
        finally:
            client.close()


def _mask(url: str) -> str:
    """The URL with any password replaced by ``***``, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"
