"""RabbitMQ and Redis in throwaway containers, through testcontainers.

Used where a Docker engine answers (CI runners, developer laptops).
testcontainers and the Docker SDK are imported only when needed, so the rest
of liftline works without them.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

from liftline.errors import ServerError
from liftline.servers.base import (
    Endpoints,
    ServerProvider,
    amqp_answers,
    management_api_answers,
    redis_answers,
)

log = logging.getLogger(__name__)

ENABLED_PLUGINS = b"[rabbitmq_management,rabbitmq_prometheus,rabbitmq_stream].\n"
AMQP_PORT, MANAGEMENT_PORT, STREAM_PORT, REDIS_PORT = 5672, 15672, 5552, 6379


def docker_engine_answers(timeout_s: float = 2.0) -> bool:
    """True only if a Docker daemon answers a ping within about ``timeout_s``.

    Never raises: a missing SDK, socket or daemon all mean False.
    """
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        return _unix_ping(host.removeprefix("unix://"), timeout_s)
    return _sdk_ping(timeout_s)


def _unix_ping(path: str, timeout_s: float) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"HTTP/") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _sdk_ping(timeout_s: float) -> bool:
    """Ping a TCP/SSH Docker host through the SDK (it knows TLS and contexts)."""
    try:
        import docker
    except ImportError:
        return False
    # A failed client construction leaks its socket; collect it while warnings are off
    # so that a run with warnings-as-errors does not fail on our probe.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        client = None
        try:
            client = docker.from_env(timeout=max(1, round(timeout_s)))
            return bool(client.ping())
        except Exception:  # DockerException, requests errors, OSError …
            return False
        finally:
            if client is not None:
                client.close()
            gc.collect()


class ContainerServers(ServerProvider):
    """``rabbitmq:3.13-management`` (plus the stream plugin) and ``redis:7`` with an AOF.

    Containers are removed by ``stop()`` (and by testcontainers' reaper if the
    test process dies), so nothing survives a session. Readiness is checked
    here (AMQP login, management API, Redis PING) rather than with
    testcontainers' per-service classes, whose wait helpers are deprecated and
    warn, which a warnings-as-errors test run cannot afford.
    """

    def __init__(
        self,
        *,
        rabbitmq_image: str = "rabbitmq:3.13-management",
        redis_image: str = "redis:7",
        start_timeout_s: float = 120.0,
    ) -> None:
        self.rabbitmq_image = rabbitmq_image
        self.redis_image = redis_image
        self.start_timeout_s = start_timeout_s
        self.rabbitmq: Any = None
        self.redis: Any = None

    def _start(self) -> Endpoints:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                endpoints = self._start_containers()
        except ServerError:
            self._stop()
            raise
        except Exception as exc:
            self._stop()
            raise ServerError(f"could not start the test containers: {exc}") from exc
        log.info("test containers ready: %s", endpoints)
        return endpoints

    def _start_containers(self) -> Endpoints:
        try:
            from testcontainers.core.container import DockerContainer
        except ImportError as exc:
            raise ServerError("testcontainers is not installed") from exc
        deadline = time.monotonic() + self.start_timeout_s
        self.redis = DockerContainer(self.redis_image).with_exposed_ports(REDIS_PORT)
        self.redis.with_command("redis-server --appendonly yes --save ''")
        self.redis.start()
        self.rabbitmq = DockerContainer(self.rabbitmq_image).with_exposed_ports(
            AMQP_PORT, MANAGEMENT_PORT, STREAM_PORT
        )
        # Written before the container starts, so the node boots with the plugins on.
        self.rabbitmq.with_copy_into_container(ENABLED_PLUGINS, "/etc/rabbitmq/enabled_plugins")
        self.rabbitmq.start()
        endpoints = Endpoints(
            amqp_url=f"amqp://guest:guest@{self._address(self.rabbitmq, AMQP_PORT)}/%2F",
            redis_url=f"redis://{self._address(self.redis, REDIS_PORT)}/0",
            management_url=f"http://guest:guest@{self._address(self.rabbitmq, MANAGEMENT_PORT)}",
        )
        checks: list[tuple[str, Callable[[], bool]]] = [
            ("Redis", lambda: redis_answers(endpoints.redis_url)),
            ("RabbitMQ", lambda: amqp_answers(endpoints.amqp_url)),
            ("RabbitMQ management", lambda: management_api_answers(endpoints.management_url or "")),
        ]
        for name, check in checks:
            while not check():
                if time.monotonic() >= deadline:
                    raise ServerError(f"{name} container not ready in {self.start_timeout_s:.0f}s")
                time.sleep(0.5)
        return endpoints

    @staticmethod
    def _address(container: Any, port: int) -> str:
        return f"{container.get_container_host_ip()}:{container.get_exposed_port(port)}"

    def _stop(self) -> None:
        for attr in ("rabbitmq", "redis"):
            container = getattr(self, attr)
            setattr(self, attr, None)
            if container is None:
                continue
            try:
                container.stop()
            except Exception as exc:  # a container already gone is not an error here
                log.warning("could not remove the %s container: %s", attr, exc)
