"""RabbitMQ and Redis restarts under load: bounded reconnects, nothing acknowledged lost."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from helpers import wait_until
from pipeline import Workers, redis_state, wait_flushed

from liftline import Producer, Settings
from liftline.errors import BrokerUnavailable, PublishFailed
from liftline.queue.topology import Names


def _settings(local_servers, name: str) -> Settings:
    e = local_servers.endpoints
    return Settings.from_env(
        {}, amqp_url=e.amqp_url, redis_url=e.redis_url, cluster=name, partitions=4,
        flush_interval_ms=100, reconnect_attempts=4, reconnect_backoff_s=0.2,
        reconnect_backoff_max_s=1.0, confirm_timeout_s=15,
    )


def test_producer_and_worker_ride_out_a_rabbitmq_crash(local_servers, tmp_path):
    settings = _settings(local_servers, "rmqcrash")
    client = redis.Redis.from_url(settings.redis_url)
    pool = Workers(settings, client, tmp_path)
    try:
        pool.start()
        acked, failed = [], []
        with Producer(settings) as producer:
            for i in range(2000):
                acked.append(producer.submit("incr", f"before:{i}", 1).result(30))
            local_servers.rabbitmq.kill()
            started = time.monotonic()
            outage = [producer.submit("incr", f"during:{i}", 1) for i in range(500)]
            for fut in outage:
                error = fut.exception(60)
                if error is None:
                    acked.append(fut.ticket)
                else:
                    assert isinstance(error, BrokerUnavailable | PublishFailed), error
                    failed.append(fut.ticket)
            gave_up_after = time.monotonic() - started
            assert failed, "writes during the outage cannot all have been confirmed"
            assert gave_up_after < 20, f"producer took {gave_up_after:.1f}s to report failures"
            local_servers.rabbitmq.start()
            # The producer reconnects by itself; writes after the restart succeed.
            wait_until(lambda: producer._publisher.connected.is_set(), 30,
                       message="producer reconnect")
            for i in range(2000):
                acked.append(producer.submit("incr", f"after:{i}", 1).result(30))
        wait_flushed(client, settings, acked, timeout_s=90)
        state = redis_state(client, settings)
        applied = {k for k, v in state.items() if v == 1}
        assert all(v == 1 for v in state.values()), "a write was applied twice"
        acked_keys = {f"before:{i}" for i in range(2000)} | {f"after:{i}" for i in range(2000)}
        assert acked_keys <= applied
        assert applied <= acked_keys | {f"during:{i}" for i in range(500)}
    finally:
        pool.stop_all()
        client.close()


def test_writes_to_streams_that_did_not_come_back_are_never_acknowledged(local_servers):
    """A node SIGKILLed within minutes of creating its streams comes back with them
    down (README, Known problems). RabbitMQ returns what is routed to them, and the
    producer reports every such write as failed: none is confirmed, none is lost
    silently. (Nothing to show if this RabbitMQ brings its streams back.)"""
    settings = _settings(local_servers, "streamdown")
    streams = {f"//{Names(settings.cluster).stream(n)}" for n in range(settings.partitions)}
    rabbitmq = local_servers.rabbitmq
    with Producer(settings) as producer:
        assert producer.put("before", 1).partition >= 0  # the streams exist, confirmed
        rabbitmq.kill()
        rabbitmq.start(require_queues=False)
        down = set(rabbitmq.queues_down())
        if not streams <= down:
            pytest.skip(f"this RabbitMQ brought its streams back after a kill ({down})")
        wait_until(lambda: producer.publisher.connected.is_set(), 30,
                   message="producer reconnect")
        futures = [producer.submit("set", f"k{i}", i) for i in range(200)]
        errors = [f.exception(60) for f in futures]
    assert all(isinstance(e, PublishFailed) for e in errors), {type(e) for e in errors}
    assert {"unroutable" in str(e) for e in errors} == {True}, str(errors[0])


def test_worker_keeps_state_across_a_redis_crash(local_servers, tmp_path):
    settings = _settings(local_servers, "rediscrash")
    client = redis.Redis.from_url(settings.redis_url)
    pool = Workers(settings, client, tmp_path)
    try:
        worker = pool.start()
        tickets = []
        with Producer(settings) as producer:
            for i in range(3000):
                tickets.append(producer.submit("incr", f"k{i % 300}", 1))
            tickets = [t.result(30) for t in tickets]
            wait_flushed(client, settings, tickets)
            local_servers.redis.kill()
            # Writes keep being acknowledged: the gate never waits for Redis.
            more = [producer.submit("incr", f"k{i % 300}", 1) for i in range(3000)]
            tickets += [t.result(30) for t in more]
            wait_until(lambda: "postponed" in worker.log(), 30,
                       message="the worker to notice Redis is gone")
            assert worker.proc.poll() is None, worker.log()
            local_servers.redis.start()
        client.close()
        client = redis.Redis.from_url(settings.redis_url)
        wait_flushed(client, settings, tickets, timeout_s=60)
        assert redis_state(client, settings) == {f"k{i}": 20 for i in range(300)}
    finally:
        pool.stop_all()
        client.close()


def test_max_buffered_holds_writers_back_while_rabbitmq_confirms_nothing(local_servers):
    """max_buffered counts writes until they are confirmed: while a memory alarm keeps
    RabbitMQ from reading the connection, a writer past the bound waits (before, the
    publisher's taking a batch made room, and an outage grew the buffer without end);
    once the alarm clears, everything is confirmed, the waiting write too."""
    settings = _settings(local_servers, "bufalarm").replace(confirm_timeout_s=60)
    rabbitmq = local_servers.rabbitmq
    with Producer(settings, max_buffered=50) as producer:
        assert producer.put("before", 1).partition >= 0  # connected, confirming
        rabbitmq.ctl("set_vm_memory_high_watermark", "0")
        try:
            held = [producer.submit("incr", f"held:{i}", 1) for i in range(50)]
            # RabbitMQ blocks a publishing connection at its next publish: these.
            wait_until(lambda: producer.publisher.blocked, 30, message="connection blocked")
            late: list[Any] = []
            writer = threading.Thread(
                target=lambda: late.append(producer.submit("incr", "late", 1)))
            writer.start()
            writer.join(2.0)  # a bound: it must still be waiting for room
            assert writer.is_alive() and late == [], "a write past max_buffered was taken"
            assert not any(f.done() for f in held)
        finally:
            rabbitmq.ctl("set_vm_memory_high_watermark", "0.4")
        writer.join(60)
        assert not writer.is_alive() and len(late) == 1
        tickets = [f.result(60) for f in held] + [late[0].result(60)]
    assert len(set(tickets)) == 51
