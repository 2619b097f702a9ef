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
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from liftline.errors import ServerError
from liftline.servers.base import Endpoints, ServerProvider, management_api_answers

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
    test process dies), so nothing survives a session.
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
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def _start(self) -> Endpoints:
        try:
            from testcontainers.community.rabbitmq import RabbitMqContainer
            from testcontainers.community.redis import RedisContainer
        except ImportError:
            try:
                from testcontainers.rabbitmq import RabbitMqContainer
                from testcontainers.redis import RedisContainer
            except ImportError as exc:
                raise ServerError("testcontainers is not installed") from exc
        try:
            self.redis = RedisContainer(self.redis_image).with_command(
                "redis-server --appendonly yes --save ''"
            )
            self.redis.start()
            self.rabbitmq = RabbitMqContainer(self.rabbitmq_image)
            self.rabbitmq.with_exposed_ports(MANAGEMENT_PORT, STREAM_PORT)
            self._enable_plugins(self.rabbitmq)
            self.rabbitmq.start()  # returns once an AMQP connection succeeds
            endpoints = self._endpoints_now()
            self._wait_management(endpoints.management_url or "")
        except ServerError:
            self._stop()
            raise
        except Exception as exc:
            self._stop()
            raise ServerError(f"could not start containers: {exc}") from exc
        return endpoints

    def _enable_plugins(self, container: Any) -> None:
        target = "/etc/rabbitmq/enabled_plugins"
        if hasattr(container, "with_copy_into_container"):
            container.with_copy_into_container(ENABLED_PLUGINS, target)
            return
        # Older testcontainers: bind-mount a file (needs a local Docker engine).
        self._tmp = tempfile.TemporaryDirectory(prefix="liftline-rabbitmq-")
        path = Path(self._tmp.name) / "enabled_plugins"
        path.write_bytes(ENABLED_PLUGINS)
        container.with_volume_mapping(str(path), target, "ro")

    def _endpoints_now(self) -> Endpoints:
        rabbit_host = self.rabbitmq.get_container_host_ip()
        redis_host = self.redis.get_container_host_ip()
        amqp = self.rabbitmq.get_exposed_port(AMQP_PORT)
        mgmt = self.rabbitmq.get_exposed_port(MANAGEMENT_PORT)
        redis_port = self.redis.get_exposed_port(REDIS_PORT)
        return Endpoints(
            amqp_url=f"amqp://guest:guest@{rabbit_host}:{amqp}/%2F",
            redis_url=f"redis://{redis_host}:{redis_port}/0",
            management_url=f"http://guest:guest@{rabbit_host}:{mgmt}",
        )

    def _wait_management(self, management_url: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while not management_api_answers(management_url):
            if time.monotonic() >= deadline:
                raise ServerError(f"RabbitMQ management API at {management_url} never answered")
            time.sleep(0.5)

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
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
