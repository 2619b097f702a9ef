"""The 3-node RabbitMQ cluster (liftline.servers.cluster, as `liftline up --rabbitmq-nodes 3`
starts it): one cluster of three nodes, partition streams and job queues replicated on
all three with their leaders spread, and `liftline status` showing it, a dead node too."""

from __future__ import annotations

import collections
import json
import os

import pika
from brokers import all_online, cluster_settings, stream_leaders
from helpers import run_liftline, wait_until
from pipeline import REPO

from liftline.cluster import bootstrap
from liftline.jobs import topology as job_topology
from liftline.queue.connection import connect_blocking
from liftline.queue.management import cluster_view
from liftline.servers.local import pid_alive

NODES = ("r1@localhost", "r2@localhost", "r3@localhost")


def leaders_of_all(settings, kind: str) -> list[str]:
    """The leader of every queue of this type on the nodes (every test's clusters)."""
    view = cluster_view(settings, "liftline.")
    return [q.leader for q in view.queues.values() if q.kind == kind and q.leader]


def evens_out(before: list[str], added: list[str]) -> bool:
    """Whether ``added`` leaders went, one by one, to the node leading the fewest (±1):
    what RabbitMQ's balanced placement does, counting every queue of the type."""
    expected = collections.Counter({n: 0 for n in NODES}) + collections.Counter(before)
    for _ in added:
        expected[min(NODES, key=lambda n: expected[n])] += 1
    got = collections.Counter(before) + collections.Counter(added)
    return max(abs(got[n] - expected[n]) for n in NODES) <= 1


def test_three_nodes_form_one_cluster_on_loopback(cluster_nodes):
    assert cluster_nodes.running_names() == {"r1@localhost", "r2@localhost", "r3@localhost"}
    for node in cluster_nodes.nodes:
        assert node.pid is not None and pid_alive(node.pid)
        # AMQP on loopback only; a connection to any node works.
        conn = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
        conn.close()


def test_streams_and_job_queues_get_three_replicas_and_spread_leaders(cluster_nodes, endpoints,
                                                                       cluster_name):
    settings = cluster_settings(cluster_nodes, endpoints, cluster_name)
    streams_before, quorum_before = leaders_of_all(settings, "stream"), \
        leaders_of_all(settings, "quorum")
    bootstrap.prepare(settings)
    conn = connect_blocking(settings)
    try:
        job_topology.declare(conn.channel(), settings)
    finally:
        conn.close()
    wait_until(lambda: all_online(settings), 30, interval_s=0.5, message="3 replicas online")
    leaders = stream_leaders(settings)
    # Each new leader goes to the node leading the fewest streams (of every cluster on
    # these nodes: earlier tests' streams count too), so the totals even out.
    assert evens_out(streams_before, list(leaders.values())), (streams_before, leaders)
    view = cluster_view(settings, f"liftline.{cluster_name}.jobs")
    quorum = [q for q in view.queues.values() if q.kind == "quorum"]
    assert len(quorum) == settings.job_key_queues + 4
    assert all(len(q.members) == 3 for q in quorum)
    assert evens_out(quorum_before, [q.leader for q in quorum if q.leader])
    # Declaring again (any client, any node) is a no-op, and one that sees a single
    # node (so no replica argument) uses the queues as they are.
    bootstrap.prepare(settings)
    single = settings.replace(amqp_url=cluster_nodes.nodes[1].amqp_url, stream_replicas=0)
    bootstrap.prepare(single)


def test_status_shows_leaders_replicas_and_a_node_that_is_down(cluster_nodes, endpoints,
                                                               cluster_name):
    settings = cluster_settings(cluster_nodes, endpoints, cluster_name)
    bootstrap.prepare(settings)
    wait_until(lambda: all_online(settings), 30, interval_s=0.5, message="3 replicas online")
    env = {**os.environ, **settings.child_env(), "PYTHONPATH": str(REPO)}
    shown = json.loads(run_liftline(["status", "--json"], env=env, check=True).stdout)
    assert [n["running"] for n in shown["rabbitmq"]["nodes"]] == [True, True, True]
    rows = shown["partition_state"]
    assert all(len(r["stream_online"]) == 3 and r["stream_leader"] for r in rows)
    assert all(r["missing_writes"] == 0 for r in rows)
    cluster_nodes.kill_node(2)
    wait_until(lambda: "r3@localhost" not in cluster_nodes.running_names(), 30,
               message="r3 seen down")
    result = run_liftline(["status"], env=env)
    assert result.returncode == 0, result.stderr
    assert "rabbitmq nodes: r1@localhost up, r2@localhost up, r3@localhost DOWN" in result.stdout
    assert "warning: rabbitmq node r3@localhost is down" in result.stderr

    def moved_off_r3() -> bool:
        # The management API's per-queue figures lag a few seconds behind.
        rows = json.loads(run_liftline(["status", "--json"], env=env).stdout)["partition_state"]
        return all("r3@localhost" not in r["stream_online"] and r["stream_leader"]
                   and r["stream_leader"] != "r3@localhost" for r in rows)

    wait_until(moved_off_r3, 30, interval_s=1, message="every stream led and online off r3")
