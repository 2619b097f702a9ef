"""The contract every test-server backend implements, and port helpers.

A :class:`ServerProvider` gives liftline a RabbitMQ (with the stream and
management plugins) and a Redis, and says where they are through
:class:`Endpoints`. Backends live one per module: ``local`` (system binaries),
``containers`` (testcontainers) and ``urls`` (servers someone else runs).
"""

from __future__ import annotations

import abc
import random
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
import redis

from liftline.errors import ServerError
from liftline.queue.management import management_get


@dataclass(frozen=True)
class Endpoints:
    """Where a running RabbitMQ and Redis answer.

    ``management_url`` carries the credentials in its userinfo part
    (``http://user:pass@host:port``) and is ``None`` when unknown.
    """

    amqp_url: str
    redis_url: str
    management_url: str | None = None


class ServerProvider(abc.ABC):
    """Starts (or finds) one RabbitMQ and one Redis; stops what it started.

    ``start()`` returns once both servers accept connections, or raises
    :class:`~liftline.errors.ServerError`. ``stop()`` may be called any number
    of times, also after a failed ``start()``. Used as a context manager,
    ``with provider as endpoints:`` starts on entry and stops on exit.
    """

    _endpoints: Endpoints | None = None

    @abc.abstractmethod
    def _start(self) -> Endpoints:
        """Bring both servers up and return where they answer."""

    @abc.abstractmethod
    def _stop(self) -> None:
        """Stop whatever this provider started; must tolerate nothing running."""

    def start(self) -> Endpoints:
        """Start both servers (no-op if already started) and return their endpoints."""
        if self._endpoints is None:
            self._endpoints = self._start()
        return self._endpoints

    def stop(self) -> None:
        """Stop both servers; idempotent."""
        try:
            self._stop()
        finally:
            self._endpoints = None

    @property
    def endpoints(self) -> Endpoints:
        """The endpoints of the running servers; raises ServerError before ``start()``."""
        if self._endpoints is None:
            raise ServerError(f"{type(self).__name__} is not started")
        return self._endpoints

    def __enter__(self) -> Endpoints:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _ephemeral_low(default: int = 32768) -> int:
    """The lowest port Linux hands out to outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


_PICK_FROM = 10_000  # ports below this are left to well-known services


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free a moment ago.

    They are picked at random below the kernel's ephemeral range, so that the
    outgoing connections of a busy machine (whose local ports come from that
    range) cannot take one before the server binds it; if that range leaves no
    room, the kernel picks. All sockets stay bound until every port is chosen,
    so the ports differ from each other; another process may still bind one
    first, on purpose.
    """
    high = _ephemeral_low()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            for _attempt in range(50 if high - _PICK_FROM > 1000 else 0):
                try:
                    sock.bind((host, random.randrange(_PICK_FROM, high)))
                    break
                except OSError:
                    continue
            else:
                sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return one TCP port that was free a moment ago (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises :class:`~liftline.errors.ServerError` if it does not within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not port_answers(host, port):
        if time.monotonic() >= deadline:
            raise ServerError(f"nothing listens on {host}:{port} after {timeout_s:.1f}s")
        time.sleep(0.05)


def management_api_answers(management_url: str, timeout_s: float = 2.0) -> bool:
    """True if the RabbitMQ management API at ``management_url`` answers ``/api/overview``."""
    return management_get(management_url, "/api/overview", timeout_s) is not None


def amqp_answers(amqp_url: str, timeout_s: float = 2.0) -> bool:
    """True if an AMQP connection (login included) to ``amqp_url`` succeeds now."""
    params = pika.URLParameters(amqp_url)
    params.connection_attempts = 1
    params.socket_timeout = timeout_s
    try:
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError):
        return False
    return True


def redis_answers(redis_url: str, timeout_s: float = 1.0) -> bool:
    """True if Redis at ``redis_url`` answers PING now (not while it loads its data)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:  # includes BusyLoadingError while the AOF loads
        return False
    finally:
        client.close()


def stop_each(servers: Iterable[Any], timeout_s: float) -> None:
    """``stop(timeout_s)`` every server in turn, even after one fails; then raise the
    first ServerError, if any."""
    errors: list[ServerError] = []
    for server in servers:
        try:
            server.stop(timeout_s)
        except ServerError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
