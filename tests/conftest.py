"""Session-wide fixtures: real RabbitMQ and Redis, started only when a test asks.

Which servers: ``LIFTLINE_TEST_AMQP_URL`` + ``LIFTLINE_TEST_REDIS_URL`` if set,
else containers if a Docker engine answers, else the system binaries in a
temporary directory (see :func:`liftline.servers.provider_for_tests`).
Every test gets its own ``cluster_name``; liftline prefixes all its RabbitMQ
names and Redis keys with it, so tests share the servers without sharing state.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import missing_local_binaries
from http_ingest import Servers
from sentinel_set import SentinelSet

from liftline.servers import Endpoints, LocalServers, ServerProvider, provider_for_tests
from liftline.servers.cluster import LocalRabbitCluster

TESTS_DIR = Path(__file__).resolve().parent
# Tests under these directories get the marker of the same name.
DIRECTORY_MARKERS = ("integration", "faults", "cluster")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """A banner when the dashboard's browser test was skipped (no chromium or playwright)."""
    from browser import SKIPPED

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIPPED in str(r.longrepr)]
    if skipped:
        terminalreporter.section(SKIPPED, sep="!", red=True, bold=True)
        for report in skipped:
            terminalreporter.line(f"{report.nodeid}: {report.longrepr[-1]}", red=True, bold=True)
        terminalreporter.line("The dashboard was NOT tested in a browser on this run.", red=True,
                              bold=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if top in DIRECTORY_MARKERS:
            item.add_marker(getattr(pytest.mark, top))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProvider]:
    """The session's RabbitMQ and Redis, started on first use; ``.endpoints`` says where."""
    provider = provider_for_tests(tmp_path_factory.mktemp("servers"))
    if isinstance(provider, LocalServers):
        reason = missing_local_binaries()
        if reason:
            pytest.skip(
                f"no servers for integration tests ({reason}); set LIFTLINE_TEST_AMQP_URL "
                "and LIFTLINE_TEST_REDIS_URL or make a Docker engine available"
            )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def endpoints(servers: ServerProvider) -> Endpoints:
    """Where the session's servers answer."""
    return servers.endpoints


@pytest.fixture
def cluster_name() -> str:
    """A fresh cluster name (``t`` + 8 hex digits): this test's namespace on the servers."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
def redis_client(endpoints: Endpoints) -> Iterator[redis.Redis]:
    """A client (bytes in, bytes out) on the session's Redis, closed after the test."""
    client = redis.Redis.from_url(endpoints.redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def local_servers(tmp_path: Path) -> Iterator[LocalServers]:
    """A started RabbitMQ + Redis of this test's own, free to kill and restart.

    Separate from the session servers, so a fault test cannot disturb other
    tests. Torn down with SIGKILL: its data is thrown away anyway, and a
    graceful RabbitMQ stop costs ~6 s.
    """
    reason = missing_local_binaries()
    if reason:
        pytest.skip(f"fault tests need local RabbitMQ and Redis binaries ({reason})")
    provider = LocalServers(tmp_path / "servers")
    provider.start()
    try:
        yield provider
    finally:
        provider.kill()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A Redis primary, two replicas and three Sentinels of the test's own
    (``.url`` is the ``redis+sentinel://`` URL); all stopped after the test."""
    group = SentinelSet(tmp_path / "redis")
    group.start()
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRabbitCluster]:
    """A 3-node RabbitMQ cluster from the system binaries, started once per session
    (about 15-40 s), the same code as ``liftline up --rabbitmq-nodes 3``. Tests that
    kill a node use :func:`cluster_nodes`, which starts it again afterwards."""
    reason = missing_local_binaries()
    if reason:
        pytest.skip(f"the cluster tests need local RabbitMQ binaries ({reason})")
    cluster = LocalRabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"), size=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.kill()


@pytest.fixture
def cluster_nodes(rabbit_cluster: LocalRabbitCluster) -> Iterator[LocalRabbitCluster]:
    """The session's cluster with all its nodes running, before and after the test."""
    _all_running(rabbit_cluster)
    try:
        yield rabbit_cluster
    finally:
        _all_running(rabbit_cluster)


def _all_running(cluster: LocalRabbitCluster) -> None:
    for index, node in enumerate(cluster.nodes):
        if node.pid is None:
            cluster.start_node(index)
    cluster.wait_running(len(cluster.nodes), 60)


# -- pipeline fixtures -------------------------------------------------------
from pipeline import Workers  # noqa: E402

from liftline.settings import Settings  # noqa: E402


@pytest.fixture
def settings(endpoints: Endpoints, cluster_name: str) -> Settings:
    """Settings for this test's cluster on the session servers (8 partitions)."""
    return Settings.from_env(
        {}, amqp_url=endpoints.amqp_url, redis_url=endpoints.redis_url, cluster=cluster_name,
        partitions=8, flush_interval_ms=100, confirm_timeout_s=30,
    )


@pytest.fixture
def workers(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Workers]:
    """Start `liftline worker` processes; all are stopped after the test."""
    pool = Workers(settings, redis_client, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def job_workers(job_settings: Settings, redis_client: redis.Redis,
                tmp_path: Path) -> Iterator[Workers]:
    """Workers on the requesting module's ``job_settings``; all stopped after the test."""
    pool = Workers(job_settings, redis_client, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Servers]:
    """`liftline ingest` processes a test starts; all stopped after it."""
    servers = Servers(tmp_path)
    try:
        yield servers
    finally:
        servers.stop_all()
