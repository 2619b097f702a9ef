"""liftline.servers without starting any server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until

import liftline.servers as servers
from liftline.errors import ServerError
from liftline.servers import (
    ContainerServers,
    Endpoints,
    LocalServers,
    ServerProvider,
    UrlServers,
    free_ports,
    provider_for_tests,
    wait_for_port,
)
from liftline.servers.containers import docker_engine_answers
from liftline.servers.local import pid_alive
from liftline.servers.urls import _mask

ENDPOINTS = Endpoints("amqp://guest:guest@127.0.0.1:1/%2F", "redis://127.0.0.1:2/0", None)


class FakeProvider(ServerProvider):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.starts = 0
        self.stops = 0

    def _start(self) -> Endpoints:
        self.starts += 1
        if self.fail:
            raise ServerError("boom")
        return ENDPOINTS

    def _stop(self) -> None:
        self.stops += 1


def test_provider_starts_once_and_stops_idempotently() -> None:
    provider = FakeProvider()
    with pytest.raises(ServerError):
        _ = provider.endpoints
    with provider as endpoints:
        assert endpoints == ENDPOINTS
        assert provider.start() == ENDPOINTS
        assert provider.endpoints == ENDPOINTS
    assert provider.starts == 1
    provider.stop()
    with pytest.raises(ServerError):
        _ = provider.endpoints


def test_failed_start_in_with_block_still_stops() -> None:
    provider = FakeProvider(fail=True)
    with pytest.raises(ServerError, match="boom"), provider:
        pass
    assert provider.stops == 1


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    # Outside the range outgoing connections take their local ports from.
    assert all(10_000 <= port < ephemeral_low for port in ports), ports
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_wait_for_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_port("127.0.0.1", listener.getsockname()[1], timeout_s=2)
        closed_port = free_ports(1)[0]
    with pytest.raises(ServerError, match="nothing listens"):
        wait_for_port("127.0.0.1", closed_port, timeout_s=0.2)


def test_url_servers_report_a_dead_server() -> None:
    port = free_ports(1)[0]
    provider = UrlServers(f"amqp://guest:secret@127.0.0.1:{port}/%2F", "redis://x", timeout_s=0)
    with pytest.raises(ServerError, match="RabbitMQ") as info:
        provider.start()
    assert "secret" not in str(info.value)


def test_mask_hides_passwords_only() -> None:
    assert _mask("amqp://u:p@h:1/%2F") == "amqp://u:***@h:1/%2F"
    assert _mask("redis://h:6379/0") == "redis://h:6379/0"


def test_provider_for_tests_prefers_urls_then_docker_then_local(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIFTLINE_TEST_AMQP_URL", "amqp://a")
    monkeypatch.setenv("LIFTLINE_TEST_REDIS_URL", "redis://r")
    monkeypatch.setenv("LIFTLINE_TEST_MANAGEMENT_URL", "http://m")
    chosen = provider_for_tests(tmp_path)
    assert isinstance(chosen, UrlServers)
    assert (chosen.amqp_url, chosen.redis_url, chosen.management_url) == (
        "amqp://a",
        "redis://r",
        "http://m",
    )

    monkeypatch.delenv("LIFTLINE_TEST_REDIS_URL")
    monkeypatch.setattr(servers, "docker_engine_answers", lambda: True)
    assert isinstance(provider_for_tests(tmp_path), ContainerServers)

    monkeypatch.setattr(servers, "docker_engine_answers", lambda: False)
    local = provider_for_tests(tmp_path)
    assert isinstance(local, LocalServers)
    assert local.rabbitmq.data_dir == tmp_path / "rabbitmq"
    assert local.redis.data_dir == tmp_path / "redis"


def test_docker_engine_answers_is_false_without_a_daemon(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert docker_engine_answers(timeout_s=0.5) is False


def test_local_servers_pick_distinct_ports(tmp_path: Path) -> None:
    local = LocalServers(tmp_path, redis_port=6399)
    rabbit = local.rabbitmq
    ports = [rabbit.amqp_port, rabbit.management_port, rabbit.stream_port]
    ports += [rabbit.dist_port, rabbit.epmd_port, local.redis.port]
    assert len(set(ports)) == 6 and local.redis.port == 6399
    assert rabbit.amqp_url == f"amqp://guest:guest@127.0.0.1:{rabbit.amqp_port}/%2F"
    assert local.redis.redis_url == "redis://127.0.0.1:6399/0"
    assert rabbit.pid is None and local.redis.pid is None
    local.stop()  # nothing started: a no-op


def test_pid_alive_treats_exited_children_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())


def test_wait_until_returns_the_value_or_fails_with_the_message() -> None:
    calls = iter([0, None, 7])
    assert wait_until(lambda: next(calls), timeout_s=2, interval_s=0.001) == 7
    with pytest.raises(AssertionError, match="the moon"):
        wait_until(lambda: False, timeout_s=0.05, message="the moon")
