"""Node lists: a Producer, a worker and an owner reader given every node's URL each
move to another node when theirs is SIGKILLed, and go on (writes confirmed, applied,
read), within seconds."""

from __future__ import annotations

import urllib.parse

import pytest
from brokers import all_online, cluster_settings, node_of, timed
from helpers import wait_until
from pipeline import Workers

from liftline import Producer
from liftline.errors import LiftlineError
from liftline.reads import OwnerReader
from liftline.servers.cluster import LocalRabbitCluster


def index_of_url(cluster: LocalRabbitCluster, url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    return next(i for i, node in enumerate(cluster.nodes) if node.amqp_port == port)


@pytest.mark.timeout(300)
def test_producer_worker_and_reader_each_move_to_a_live_node(cluster_nodes, endpoints,
                                                             cluster_name, redis_client,
                                                             tmp_path):
    settings = cluster_settings(cluster_nodes, endpoints, cluster_name, replicas=1)
    pool = Workers(settings, redis_client, tmp_path)
    try:
        pool.start()
        with Producer(settings) as producer:
            reader = OwnerReader(settings)
            try:
                ticket = producer.incr("n", 1)
                wait_until(lambda: all_online(settings), 30, interval_s=0.5,
                           message="streams online")
                assert reader.get("n", after=ticket, timeout_ms=10_000).value == 1
                expected = 1
                victims = {
                    "worker": cluster_nodes.index_of(node_of(cluster_nodes, "liftline-worker-")),
                    "producer": index_of_url(cluster_nodes, producer.publisher.node),
                    "reader": cluster_nodes.index_of(node_of(cluster_nodes, "liftline-reader")),
                }
                killed: set[int] = set()
                for role, index in victims.items():
                    if index in killed:
                        continue  # that one moved already, with the node killed before
                    for other in killed:  # never two nodes down: the streams need a majority
                        cluster_nodes.start_node(other)
                    killed = {index}
                    cluster_nodes.kill_node(index)
                    confirm_s = timed(lambda: producer.incr("n", 1) is not None, 30,
                                      message=f"a confirm after killing the {role}'s node")
                    expected += 1

                    def read_back(want: int = expected) -> bool:
                        try:
                            return reader.get("n", timeout_ms=2000).value == want
                        except LiftlineError:
                            return False

                    apply_s = timed(read_back, 30,
                                    message=f"the write applied and read ({role}'s node)")
                    print(f"{role}'s node {cluster_nodes.nodes[index].nodename} killed: "
                          f"confirmed again in {confirm_s:.2f}s, read back {apply_s:.2f}s later")
                nodes_now = {index_of_url(cluster_nodes, producer.publisher.node)}
                assert not nodes_now & killed, "the producer is on a live node"
            finally:
                reader.close()
    finally:
        pool.stop_all()
