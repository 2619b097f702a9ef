"""Helpers for tests on the 3-node RabbitMQ cluster (import as ``from brokers import …``):
settings for it, and what its management API says about leaders and connections."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any

from helpers import wait_until
from history import History, HttpLoad, check, check_counters
from pipeline import memory_state, redis_state, wait_flushed

from liftline.cluster.registry import live_members, owners_of
from liftline.queue.management import cluster_view, management_get
from liftline.queue.topology import Names
from liftline.servers import Endpoints
from liftline.servers.cluster import LocalRabbitCluster
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import RedisStore


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


def primaries_applied(client: Any, settings: Settings) -> dict[int, int]:
    """Per partition, the applied offset its live primary reports (-2 if none)."""
    keys = Keys(settings.cluster)
    members = live_members(client, keys)
    owners = owners_of(client, keys)
    out = {}
    for p in range(settings.partitions):
        report = members.get(owners.get(p, ""), {}).get("partitions", {}).get(p)
        out[p] = int(report["applied"]) if report and report["role"] == "primary" else -2
    return out


def settled(client: Any, settings: Settings, workers: int) -> bool:
    """``workers`` live members, every partition held by R of them and applied by its primary."""
    members = live_members(client, Keys(settings.cluster))
    if len(members) != workers:
        return False
    holders = {p: sum(p in m["partitions"] for m in members.values())
               for p in range(settings.partitions)}
    return all(n == settings.replicas for n in holders.values()) and \
        min(primaries_applied(client, settings).values()) > -2


def assert_history_holds(client: Any, settings: Settings, history: History,
                         http: HttpLoad | None = None) -> None:
    """Once every acknowledged write is flushed: nothing acknowledged lost, nothing applied
    twice (the history checker, in Redis and in the owners' memory), counters within
    [acknowledged, attempted], and every gap the workers saw in a producer's sequence
    is a write its producer was told had failed: a Producer's by its ticket; the HTTP
    service's refused writes (``http``) have no ticket, so its gaps are at most its 503s."""
    wait_flushed(client, settings, history.tickets, timeout_s=120)
    state = redis_state(client, settings)
    verdict = check(history, state)
    assert verdict.ok, (f"lost={len(verdict.lost)} {sorted(verdict.lost)[:10]} "
                        f"dup={sorted(verdict.duplicated)[:10]} "
                        f"unexpected={sorted(verdict.unexpected)[:10]}")
    assert check_counters(history, state) == {}
    in_memory = memory_state(settings, [f"h:{i}" for i in range(64)])
    assert check(history, in_memory).ok
    refused = {(t.partition, t.producer_id, t.seq) for t in history.failed_tickets}
    gaps = RedisStore(client, settings.cluster).gaps(list(range(settings.partitions)))
    missing = {(p, pid, seq) for p, by_producer in gaps.items()
               for pid, ranges in by_producer.items() for lo, hi in ranges
               for seq in range(lo, hi + 1)}
    http_ids = {t.producer_id for t in http.tickets} if http is not None else set()
    over_http = {m for m in missing if m[1] in http_ids}
    print(f"writes missing from the streams at the end: {len(missing)} "
          f"({len(over_http)} of the HTTP service)")
    assert missing - over_http <= refused, sorted(missing - over_http - refused)[:10]
    if http is not None:
        assert len(over_http) <= http.refused, (len(over_http), http.refused)
