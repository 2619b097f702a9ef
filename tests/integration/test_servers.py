"""LocalServers runs a usable RabbitMQ (streams, management, rabbitmqctl) and Redis,
stops without leaving processes behind, and keeps its data across restarts."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
import redis
from helpers import missing_local_binaries
from pika.adapters.blocking_connection import BlockingChannel

from liftline.servers import LocalServers
from liftline.servers.base import management_api_answers, port_answers
from liftline.servers.local import pid_alive


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    reason = missing_local_binaries()
    if reason:
        pytest.skip(reason)
    provider = LocalServers(tmp_path_factory.mktemp("local-servers"))
    provider.start()
    try:
        yield provider
    finally:
        provider.kill()  # graceful stop is covered below and costs ~6 s


def _channel(url: str) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _read_stream(url: str, queue: str, count: int) -> list[bytes]:
    """The first ``count`` messages of a stream, read from its start."""
    connection, channel = _channel(url)
    try:
        channel.basic_qos(prefetch_count=10)  # streams refuse consumers without a prefetch
        bodies: list[bytes] = []
        for method, _props, body in channel.consume(
            queue, arguments={"x-stream-offset": "first"}, inactivity_timeout=10
        ):
            assert method is not None, f"stream {queue} ran dry after {bodies!r}"
            channel.basic_ack(method.delivery_tag)
            bodies.append(body)
            if len(bodies) == count:
                break
        channel.cancel()
        return bodies
    finally:
        connection.close()


def test_stream_publish_and_consume(local: LocalServers) -> None:
    url = local.endpoints.amqp_url
    connection, channel = _channel(url)
    try:
        channel.queue_declare("t-stream", durable=True, arguments={"x-queue-type": "stream"})
        channel.basic_publish("", "t-stream", b"hello", mandatory=True)
    finally:
        connection.close()
    assert _read_stream(url, "t-stream", 1) == [b"hello"]


def test_redis_management_and_ctl(local: LocalServers) -> None:
    client = redis.Redis.from_url(local.endpoints.redis_url)
    try:
        client.set(b"t-key", b"value")
        assert client.get(b"t-key") == b"value"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()
    assert local.endpoints.management_url is not None
    assert management_api_answers(local.endpoints.management_url)
    status = local.rabbitmq.ctl("status")
    assert "rabbitmq_stream" in status and "rabbitmq_management" in status
    assert f"OS PID: {local.rabbitmq.node_pid}" in status


def test_stop_leaves_no_process_and_restart_keeps_data(local: LocalServers) -> None:
    endpoints = local.endpoints
    connection, channel = _channel(endpoints.amqp_url)
    try:
        channel.queue_declare("t-durable", durable=True)
        channel.basic_publish(
            "", "t-durable", b"kept", properties=pika.BasicProperties(delivery_mode=2)
        )
        channel.queue_declare("t-log", durable=True, arguments={"x-queue-type": "stream"})
        channel.basic_publish("", "t-log", b"logged")
    finally:
        connection.close()
    client = redis.Redis.from_url(endpoints.redis_url)
    try:
        client.set(b"t-kept", b"across restarts")
    finally:
        client.close()

    pids = [local.rabbitmq.pid, local.rabbitmq.node_pid, local.redis.pid]
    assert all(pids), pids
    local.stop()
    local.stop()  # idempotent
    assert [pid for pid in pids if pid and pid_alive(pid)] == []
    assert local.rabbitmq.pid is None and local.redis.pid is None
    assert not port_answers("127.0.0.1", local.rabbitmq.epmd_port), "epmd left running"
    assert not port_answers("127.0.0.1", local.rabbitmq.amqp_port)

    assert local.start() == endpoints  # same directory, same ports
    connection, channel = _channel(endpoints.amqp_url)
    try:
        declared = channel.queue_declare("t-durable", durable=True, passive=True)
        assert declared.method.message_count == 1
    finally:
        connection.close()
    assert _read_stream(endpoints.amqp_url, "t-log", 1) == [b"logged"]
    client = redis.Redis.from_url(endpoints.redis_url)
    try:
        assert client.get(b"t-kept") == b"across restarts"
    finally:
        client.close()
    assert "t-durable" in local.rabbitmq.ctl("list_queues", "name")


def test_kill_ends_processes_and_the_same_directory_starts_again(local: LocalServers) -> None:
    pids = [local.rabbitmq.pid, local.rabbitmq.node_pid, local.redis.pid]
    local.kill()  # SIGKILL both, then end the epmd
    assert local.rabbitmq.pid is None and local.redis.pid is None
    assert [pid for pid in pids if pid and pid_alive(pid)] == []
    assert not port_answers("127.0.0.1", local.rabbitmq.epmd_port), "epmd left running"

    endpoints = local.start()
    assert local.rabbitmq.node_pid not in pids
    connection, channel = _channel(endpoints.amqp_url)
    try:
        channel.queue_declare("t-stream", durable=True, arguments={"x-queue-type": "stream"})
    finally:
        connection.close()
