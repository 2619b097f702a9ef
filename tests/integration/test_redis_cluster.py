"""The store on a 3-master Redis Cluster: every script stays in one slot.

The session's Redis Cluster (the ``redis_cluster`` fixture: liftline.servers.redis_cluster,
as `liftline up --redis-cluster`) and the session's
RabbitMQ: the partitions spread over the masters, a worker applies and flushes
mixed writes that then read back from the owner and from Redis, and jobs run to
``succeeded`` with their records and counters on the cluster.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pipeline import Model, Workers, memory_state, mixed_load, redis_state, wait_flushed

from liftline import Producer
from liftline.jobs.client import JobClient
from liftline.reads.redis_reader import RedisReader
from liftline.servers.redis_cluster import LocalRedisCluster
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import connect


@pytest.fixture
def cluster_settings(redis_cluster: LocalRedisCluster, endpoints: Any,
                     cluster_name: str) -> Settings:
    return Settings.from_env(
        {}, amqp_url=endpoints.amqp_url, redis_url=redis_cluster.url, cluster=cluster_name,
        partitions=8, flush_interval_ms=100, job_result_ttl_s=60, job_key_queues=2)


def test_writes_flush_and_read_back_with_partitions_over_three_masters(
        redis_cluster: LocalRedisCluster, cluster_settings: Settings, tmp_path: Path) -> None:
    settings = cluster_settings
    keys = Keys(settings.cluster)
    masters = {redis_cluster.node_of(keys.data(p)) for p in range(settings.partitions)}
    assert masters == set(redis_cluster.ports)
    client = connect(settings.redis_url, timeout_s=5)
    pool = Workers(settings, client, tmp_path)
    try:
        pool.start()
        model, lock, futures = Model(), threading.Lock(), []
        with Producer(settings) as producer:
            mixed_load(producer, 0, 20_000, model, lock, futures)
        tickets = [f.ticket for f in futures]
        wait_flushed(client, settings, tickets)
        assert redis_state(client, settings) == model.values
        sample = sorted(model.values)[:200]
        assert memory_state(settings, sample) == {k: model.values[k] for k in sample}
        reader = RedisReader(settings)
        try:
            got = reader.get_many(sample)
        finally:
            reader.close()
        assert {k: r.value for k, r in got.items() if r.found} == \
            {k: model.values[k] for k in sample}
    finally:
        pool.stop_all()
        client.close()


def test_jobs_run_with_their_records_on_the_cluster(
        cluster_settings: Settings, tmp_path: Path) -> None:
    import jobapp

    settings = cluster_settings
    client = connect(settings.redis_url, timeout_s=5)
    pool = Workers(settings, client, tmp_path)
    try:
        pool.start(app="jobapp:app")
        with JobClient(settings, jobapp.app) as jobs:
            handles = [jobs.enqueue("echo", value=n) for n in range(50)]
            handles += [jobs.enqueue("echo", key=f"k{n % 3}", value=n) for n in range(50)]
            results = [h.result(timeout=60) for h in handles]
            assert [r["value"] for r in results] == list(range(50)) * 2
            assert {h.status()["state"] for h in handles} == {"succeeded"}
            stats = {s["name"]: s for s in jobs.status.stats()}
        assert stats["echo"]["succeeded"] == 100 and stats["echo"]["enqueued"] == 100
    finally:
        pool.stop_all()
        client.close()
