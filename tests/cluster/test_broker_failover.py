"""SIGKILL of the RabbitMQ node leading the most partition streams, under pipelined load.

3 workers at R=2 and two Producers writing steadily with up to 2,000 writes each
awaiting confirms (many batches in flight: the case in which RabbitMQ 3.10.8
confirms, without storing them, publishes sent after one it lost). Five times: kill
the busiest stream leader, wait until both producers confirm again and every
partition is applied again, start the node again and wait until every stream has
its three replicas online. Then: nothing acknowledged lost, nothing applied twice
(the history checker, in Redis and in the owners' memory), counters within
[acknowledged, attempted], every refused write reported to its producer, and every
gap the workers saw in a producer's sequence is one of those refused writes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from brokers import (
    all_online,
    assert_history_holds,
    busiest_leader,
    cluster_settings,
    primaries_applied,
    settled,
    timed,
)
from helpers import wait_until
from history import History, PipelinedLoad
from pipeline import Workers

from liftline import Producer
from liftline.cluster import bootstrap

KILLS = 5


@pytest.mark.timeout(900)
def test_killing_the_busiest_stream_leader_five_times_loses_nothing_acknowledged(
        cluster_nodes, endpoints, cluster_name, redis_client, tmp_path, request):
    settings = cluster_settings(cluster_nodes, endpoints, cluster_name)
    bootstrap.prepare(settings)
    wait_until(lambda: all_online(settings), 30, interval_s=0.5, message="3 replicas online")
    cluster_nodes.sync_to_disk()  # RabbitMQ 3.10: the new streams' Ra registrations on disk
    pool = Workers(settings, redis_client, tmp_path)
    request.addfinalizer(pool.stop_all)  # on a failure too (a no-op after stop_all)
    history = History()
    figures: list[dict[str, Any]] = []
    producers = [Producer(settings), Producer(settings)]
    loads = [PipelinedLoad(p, history, rate=800, window=2000,
                           ids=range(1 + k * 10**8, (k + 1) * 10**8))
             for k, p in enumerate(producers)]
    try:
        for _ in range(3):
            pool.start()
        wait_until(lambda: settled(redis_client, settings, 3), 60, message="3 workers settled")
        for load in loads:
            load.__enter__()
        for round_no in range(1, KILLS + 1):
            target = len(history.acked) + 2000
            wait_until(lambda t=target: len(history.acked) >= t, 60, message="2,000 more acks")
            node, leading = busiest_leader(settings)
            index = cluster_nodes.index_of(node)
            at_kill = primaries_applied(redis_client, settings)
            cluster_nodes.kill_node(index)
            killed = time.monotonic()
            confirm_s = timed(lambda k=killed: all(ld.acked_since(k) >= 100 for ld in loads), 30,
                              message="both producers confirming again")
            apply_s = timed(lambda a=at_kill: all(
                now > a[p] for p, now in primaries_applied(redis_client, settings).items()),
                30, message="every partition applied again") + confirm_s
            cluster_nodes.start_node(index)
            rejoin_s = timed(lambda: all_online(settings), 90,
                             message="the restarted node's replicas back online")
            figures.append(dict(round=round_no, node=node, leading=leading,
                                confirm_s=round(confirm_s, 2), apply_s=round(apply_s, 2),
                                rejoined_s=round(rejoin_s, 2)))
        more = len(history.acked) + 2000
        wait_until(lambda: len(history.acked) >= more, 60, message="2,000 acks after the last")
    finally:
        for load in loads:
            load.stop()
        stats = [p.publisher.stats for p in producers]
        for producer in producers:
            producer.close()
    for load in loads:
        assert not load.errors, load.errors
    print(f"rounds: {figures}")
    print(f"acknowledged {len(history.acked)}, refused {len(history.failed)}; publishers: {stats}")
    assert_history_holds(redis_client, settings, history)
    pool.stop_all()
    assert all(w.proc.returncode == 0 for w in pool.started), [w.log() for w in pool.started]
