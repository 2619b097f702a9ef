"""Helpers for tests on the 3-node RabbitMQ cluster (import as ``from brokers import …``):
settings for it, and what its management API says about leaders and connections."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any

from helpers import wait_until

from liftline.queue.management import cluster_view, management_get
from liftline.queue.topology import Names
from liftline.servers import Endpoints
from liftline.servers.cluster import LocalRabbitCluster
from liftline.settings import Settings


def cluster_settings(cluster: LocalRabbitCluster, endpoints: Endpoints, name: str,
                     **changes: Any) -> Settings:
    """Settings for cluster ``name`` on every node of ``cluster`` and the session's Redis:
    6 partitions, 3 stream replicas, R=2, a 2 s member TTL."""
    base: dict[str, Any] = dict(
        amqp_url=cluster.amqp_url, management_url=cluster.management_url,
        redis_url=endpoints.redis_url, cluster=name, partitions=6, stream_replicas=3,
        replicas=2, heartbeat_s=0.3, member_ttl_s=2.0, flush_interval_ms=100,
        confirm_timeout_s=30)
    return Settings.from_env({}, **{**base, **changes})


def stream_leaders(settings: Settings) -> dict[int, str | None]:
    """Partition → the node leading its stream (None while it has none)."""
    names = Names(settings.cluster)
    view = cluster_view(settings, f"liftline.{settings.cluster}.")
    return {p: (q.leader if (q := view.queues.get(names.stream(p))) else None)
            for p in range(settings.partitions)}


def busiest_leader(settings: Settings) -> tuple[str, int]:
    """The node leading the most partition streams, and how many it leads."""
    counts = collections.Counter(n for n in stream_leaders(settings).values() if n)
    node, count = counts.most_common(1)[0]
    return node, count


def all_online(settings: Settings, replicas: int = 3) -> bool:
    """Every partition stream has a leader and ``replicas`` replicas online."""
    view = cluster_view(settings, f"liftline.{settings.cluster}.")
    names = Names(settings.cluster)
    for p in range(settings.partitions):
        q = view.queues.get(names.stream(p))
        if q is None or not q.leader or len(q.online) < replicas:
            return False
    return True


def job_queue_leaders(settings: Settings) -> dict[str, str | None]:
    """Each of the cluster's quorum job queues → the node leading it (None while none)."""
    view = cluster_view(settings, f"liftline.{settings.cluster}.jobs")
    return {name: q.leader for name, q in view.queues.items() if q.kind == "quorum"}


def busiest_job_leader(settings: Settings, prefer: Iterable[str] = ()) -> tuple[str, int]:
    """The node leading the most quorum job queues, and how many it leads; of nodes
    leading as many, the one ``prefer`` names most often (where job runners are)."""
    counts = collections.Counter(n for n in job_queue_leaders(settings).values() if n)
    liked = collections.Counter(prefer)
    node = max(counts, key=lambda n: (counts[n], liked[n]))
    return node, counts[node]


def job_queues_online(settings: Settings, replicas: int = 3) -> bool:
    """Every quorum job queue has a leader and ``replicas`` members online."""
    view = cluster_view(settings, f"liftline.{settings.cluster}.jobs")
    quorum = [q for q in view.queues.values() if q.kind == "quorum"]
    return bool(quorum) and all(q.leader and len(q.online) >= replicas for q in quorum)


def connection_nodes(cluster: LocalRabbitCluster, prefix: str) -> dict[str, str]:
    """Connection name → node, for the client connections whose name starts with ``prefix``
    (liftline names each: ``liftline-worker-<member>``, ``liftline-producer-<id>``…)."""
    for node in cluster.nodes:
        if node.pid is None:
            continue
        got = management_get(node.management_url, "/api/connections?columns=node,client_properties")
        if isinstance(got, list):
            out = {}
            for c in got:
                name = (c.get("client_properties") or {}).get("connection_name", "")
                if name.startswith(prefix):
                    out[name] = c["node"]
            return out
    return {}


def node_of(cluster: LocalRabbitCluster, prefix: str, timeout_s: float = 15) -> str:
    """The node of the one connection named ``prefix…`` (the management API lists a new
    connection within a few seconds)."""
    found = wait_until(lambda: connection_nodes(cluster, prefix), timeout_s,
                       interval_s=0.25, message=f"a connection named {prefix}…")
    return next(iter(found.values()))


def timed(predicate: Any, timeout_s: float, message: str) -> float:
    """Seconds until ``predicate`` holds (AssertionError after ``timeout_s``)."""
    started = time.monotonic()
    wait_until(predicate, timeout_s, interval_s=0.05, message=message)
    return time.monotonic() - started
