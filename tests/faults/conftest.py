"""Fixtures of the fault tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from http_ingest import Http, Servers
from ingest_faults import fault_settings
from pipeline import Workers

from liftline.settings import Settings


@pytest.fixture
def ingest_stack(local_servers: Any, tmp_path: Path
                 ) -> Iterator[tuple[Callable[[str], tuple[Settings, Http, Workers]], redis.Redis]]:
    """``start(name)`` → settings, a client of a fresh ingest process, the worker pool.

    On the test's own RabbitMQ + Redis (``local_servers``); all stopped afterwards.
    """
    client = redis.Redis.from_url(local_servers.endpoints.redis_url)
    servers = Servers(tmp_path)
    pools: list[Workers] = []

    def start(name: str) -> tuple[Settings, Http, Workers]:
        settings = fault_settings(local_servers, name)
        pool = Workers(settings, client, tmp_path)
        pools.append(pool)
        pool.start()
        return settings, servers.client(servers.start(settings), timeout_s=30), pool

    try:
        yield start, client
    finally:
        servers.stop_all()
        for pool in pools:
            pool.stop_all()
        client.close()
