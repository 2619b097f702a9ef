"""Redis with Sentinel: the primary SIGKILLed under load, nothing acknowledged lost.

A Redis primary, two replicas and three Sentinels of the test's own (the
``sentinel_set`` fixture: liftline.servers.sentinel), the session's RabbitMQ,
two workers at R=2 on a ``redis+sentinel://`` URL, and a producer writing counters. The primary is
SIGKILLed once flushes are flowing; Sentinel promotes a replica, the workers
find it and flush again (each claim and flush counts only once WAIT says a
replica holds it), and in the end every counter in Redis equals what was
confirmed. The killed server comes back as a replica.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from pipeline import Workers, newest_flush, redis_state, wait_flushed

from liftline import Producer
from liftline.servers.sentinel import LocalSentinelSet
from liftline.settings import Settings
from liftline.store.redis_store import connect
from liftline.tickets import Ticket

WRITES = 120_000
KEYS = 500


# make test-all: make test-cluster's test_cluster_redis_failover.py kills the primary
# the same way, on the 3-node RabbitMQ cluster. (The ResourceWarning that once ended a
# run was the Sentinel sockets redis-py left open: test_sentinel_client.py.)
@pytest.mark.slow
def test_a_sentinel_failover_under_load_loses_no_acknowledged_write(
        sentinel_set: LocalSentinelSet, endpoints: Any, cluster_name: str, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, amqp_url=endpoints.amqp_url, redis_url=sentinel_set.url, cluster=cluster_name,
        partitions=4, flush_interval_ms=100, redis_wait_timeout_ms=500)
    assert settings.wait_replicas == 1
    client = connect(settings.redis_url, timeout_s=2)
    pool = Workers(settings, client, tmp_path)
    confirmed: Counter[str] = Counter()
    tickets: list[Ticket] = []
    failures: list[BaseException] = []
    try:
        pool.start()
        pool.start()
        producer = Producer(settings)

        def load() -> None:
            futures = []
            deadline = time.monotonic() + 60
            for i in range(WRITES):
                futures.append((f"c{i % KEYS}", producer.submit("incr", f"c{i % KEYS}", 1)))
                if i % 200 == 199:
                    time.sleep(0.01)  # paces the load at about 20,000 writes/s
                    if time.monotonic() > deadline:
                        break
            for key, future in futures:
                try:
                    tickets.append(future.result(60))
                    confirmed[key] += 1
                except BaseException as exc:  # noqa: BLE001 - counted, reported below
                    failures.append(exc)

        writer = threading.Thread(target=load)
        writer.start()
        wait_until(lambda: newest_flush(client, settings) > 0, 30, message="a first flush")
        old = sentinel_set.primary_port()
        assert old == sentinel_set.redis_ports[0]
        killed_at = time.time()
        sentinel_set.kill_server(old)
        new = wait_until(lambda: (p := sentinel_set.primary_port()) != old and p, 30,
                         message="Sentinel promoting a replica")
        switched_s = time.time() - killed_at
        wait_until(lambda: newest_flush(client, settings) > killed_at + switched_s, 30,
                   interval_s=0.05, message="a flush accepted by the new primary")
        first_flush_s = time.time() - killed_at
        writer.join(120)
        assert not writer.is_alive()
        producer.close()
        assert not failures, failures[:3]
        assert sum(confirmed.values()) == len(tickets) > WRITES // 2
        wait_flushed(client, settings, tickets, timeout_s=90)
        assert redis_state(client, settings) == dict(confirmed)
        # The killed server returns as a replica of the new primary.
        sentinel_set.start_server(old, replica_of=new)
        wait_until(lambda: sentinel_set.linked_replica(old), 60,
                   message="the old primary back as a replica with its link up")
        print(f"\nSentinel failover: promoted after {switched_s:.2f} s, first flush on the "
              f"new primary {first_flush_s:.2f} s after the kill; {len(tickets):,} writes "
              f"confirmed, all in Redis")
    finally:
        pool.stop_all()
        client.close()
