"""Real RabbitMQ and Redis servers for tests and the local stack.

One :class:`ServerProvider` per backend: :class:`LocalServers` (system
binaries), :class:`ContainerServers` (testcontainers) and :class:`UrlServers`
(servers already running). :func:`provider_for_tests` picks one.
"""

from __future__ import annotations

import os
from pathlib import Path

from liftline.servers.base import Endpoints, ServerProvider, free_port, free_ports, wait_for_port
from liftline.servers.containers import ContainerServers, docker_engine_answers
from liftline.servers.local import (
    LocalRabbitMQ,
    LocalRedis,
    LocalServers,
    rabbitmq_available,
    redis_available,
)
from liftline.servers.urls import UrlServers

__all__ = [
    "ContainerServers",
    "Endpoints",
    "LocalRabbitMQ",
    "LocalRedis",
    "LocalServers",
    "ServerProvider",
    "UrlServers",
    "docker_engine_answers",
    "free_port",
    "free_ports",
    "provider_for_tests",
    "rabbitmq_available",
    "redis_available",
    "wait_for_port",
]


def provider_for_tests(tmp_dir: Path) -> ServerProvider:
    """The servers a test session should use, not yet started.

    1. ``LIFTLINE_TEST_AMQP_URL`` and ``LIFTLINE_TEST_REDIS_URL`` (and optionally
       ``LIFTLINE_TEST_MANAGEMENT_URL``) set: those servers (:class:`UrlServers`).
    2. A Docker engine answers: fresh containers (:class:`ContainerServers`).
    3. Otherwise: the system binaries, with data in ``tmp_dir`` (:class:`LocalServers`).
    """
    amqp_url = os.environ.get("LIFTLINE_TEST_AMQP_URL")
    redis_url = os.environ.get("LIFTLINE_TEST_REDIS_URL")
    if amqp_url and redis_url:
        return UrlServers(amqp_url, redis_url, os.environ.get("LIFTLINE_TEST_MANAGEMENT_URL"))
    if docker_engine_answers():
        return ContainerServers()
    return LocalServers(tmp_dir)
