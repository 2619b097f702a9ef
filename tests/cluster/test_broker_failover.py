"""SIGKILL of the RabbitMQ node leading the most partition streams, under mixed load.

The set of tests/cluster_load.py: 3 workers at R=2 with Redis behind Sentinels
(a primary, two replicas, three Sentinels), two Producers writing steadily with up
to 2,000 writes each awaiting confirms (many batches in flight: the case in which
RabbitMQ 3.10.8 confirms, without storing them, publishes sent after one it
lost) and the HTTP service taking one write per request. Five times: kill the
busiest stream leader, wait until both producers and the HTTP service confirm
again and every partition is applied again (the figures say how many of the three
publishers' connections were on the killed node), start the node again and wait until
every stream has its three replicas online. Then the checks of
:meth:`ClusterLoad.verify`: nothing acknowledged lost or applied twice, every
refused write reported to its producer (an exception, or HTTP 503).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from brokers import (
    all_online,
    busiest_leader,
    cluster_settings,
    connection_nodes,
    primaries_applied,
    timed,
)
from cluster_load import ClusterLoad
from helpers import wait_until

from liftline.cluster import bootstrap
from liftline.store.redis_store import connect

KILLS = 5


@pytest.mark.timeout(900)
def test_killing_the_busiest_stream_leader_five_times_loses_nothing_acknowledged(
        cluster_nodes, endpoints, cluster_name, sentinel_set, ingest, tmp_path):
    settings = cluster_settings(cluster_nodes, endpoints, cluster_name,
                                redis_url=sentinel_set.url, redis_wait_timeout_ms=500)
    bootstrap.prepare(settings)
    wait_until(lambda: all_online(settings), 30, interval_s=0.5, message="3 replicas online")
    cluster_nodes.sync_to_disk()  # RabbitMQ 3.10: the new streams' Ra registrations on disk
    client = connect(settings.redis_url, timeout_s=2)
    load = ClusterLoad(settings, client, ingest, tmp_path)
    figures: list[dict[str, Any]] = []
    try:
        load.start()
        for round_no in range(1, KILLS + 1):
            load.wait_acks(2000)
            node, leading = busiest_leader(settings)
            index = cluster_nodes.index_of(node)
            at_kill = primaries_applied(client, settings)
            on_node = sum(n == node for n in
                          connection_nodes(cluster_nodes, "liftline-producer-").values())
            cluster_nodes.kill_node(index)
            killed = time.monotonic()
            confirm_s = timed(lambda k=killed: load.confirming_since(k), 30,
                              message="both producers and the HTTP service confirming again")
            apply_s = timed(lambda a=at_kill: all(
                now > a[p] for p, now in primaries_applied(client, settings).items()),
                30, message="every partition applied again") + confirm_s
            # The management API's figures lag by seconds: the rejoin is measured from a
            # view that saw the killed node's replicas gone.
            wait_until(lambda: not all_online(settings), 30, interval_s=0.2,
                       message="the killed node's replicas seen offline")
            cluster_nodes.start_node(index)
            rejoin_s = timed(lambda: all_online(settings), 90,
                             message="the restarted node's replicas back online")
            figures.append(dict(round=round_no, node=node, leading=leading,
                                publishers_on_it=on_node,
                                confirm_s=round(confirm_s, 2), apply_s=round(apply_s, 2),
                                rejoined_s=round(rejoin_s, 2)))
        load.wait_acks(2000)
        load.stop()
        print(f"\nrounds: {figures}")
        load.verify()
    finally:
        load.close()
        client.close()
