"""Cluster state for `liftline status`: members, and per partition where it stands.

Besides Redis (members, owners, flushed state, gaps) and the streams' bounds
(AMQP), the RabbitMQ management API gives the broker's side: which nodes run,
and per partition stream and job queue its leader and the replicas online.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import pika.exceptions

from liftline.autoscale import record as autoscale_record
from liftline.cluster.registry import live_members, owners_of
from liftline.errors import BrokerError, StoreError
from liftline.queue.connection import Nodes, connect_blocking
from liftline.queue.inspect import StreamBounds, stream_bounds
from liftline.queue.management import ClusterView, cluster_view
from liftline.queue.topology import Names
from liftline.settings import Settings, mask_url
from liftline.store.keys import Keys
from liftline.store.redis_store import RedisStore, connect

log = logging.getLogger(__name__)

# Warn when fewer than this many stream entries separate retention from unflushed data.
THIN_MARGIN = 1000
STALE_FLUSH_S = 30.0


def gather(settings: Settings) -> dict[str, Any]:
    """A snapshot of the cluster: members, partitions, warnings (JSON-ready).

    Never raises for a server out of reach: what that server would have told is
    missing, and ``unreachable`` lists ``{"server", "error"}`` for each one (an
    empty list: a full answer). Each server gets ``settings.query_timeout_s`` per
    connection attempt, so a server that hangs cannot hold the answer up for long.
    """
    unreachable: list[dict[str, str]] = []
    stored_p: int | None = None
    members: dict[str, dict[str, Any]] = {}
    owners: dict[int, str] = {}
    states: dict[int, dict[str, str]] = {}
    autoscaler = None
    gaps: dict[int, dict[str, list[list[int]]]] = {}
    client = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
    try:
        store = RedisStore(client, settings.cluster)
        keys = Keys(settings.cluster)
        stored_p = store.cluster_partitions()
        partitions = stored_p or settings.partitions
        members = live_members(client, keys)
        owners = owners_of(client, keys)
        states = {p: store.state(p) for p in range(partitions)}
        gaps = store.gaps(list(range(partitions)))
        autoscaler = autoscale_record.load(client, settings.cluster)
    except StoreError as exc:
        unreachable.append({"server": "redis", "error": str(exc)})
    finally:
        client.close()
    partitions = stored_p or settings.partitions
    bounds = {p: StreamBounds() for p in range(partitions)}
    try:
        bounds = _bounds(settings, partitions)
    except BrokerError as exc:
        unreachable.append({"server": "rabbitmq", "error": str(exc)})
    view: ClusterView | None = None
    try:
        view = cluster_view(settings, f"liftline.{settings.cluster}.")
    except BrokerError as exc:
        # Only a management API someone configured counts as out of reach: the
        # default one (AMQP port + 10000) may simply not exist.
        if settings.management_url:
            unreachable.append({"server": "rabbitmq-management", "error": str(exc)})
    now = time.time()
    replicas = max([m["replicas"] for m in members.values()] or [settings.replicas])
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    if stored_p is None and not any(u["server"] == "redis" for u in unreachable):
        warnings.append(f"cluster {settings.cluster!r} does not exist yet (no writes or workers)")
    if members and len(members) < replicas:
        warnings.append(f"replication is short: {len(members)} live worker(s) for "
                        f"replication factor {replicas}")
    names = Names(settings.cluster)
    for p in range(partitions):
        row = _partition_row(p, states.get(p, {}), owners.get(p), members, bounds[p],
                             now, replicas, warnings)
        _gap_columns(row, members, gaps.get(p, {}), warnings)
        if view is not None:
            _placement_columns(row, view.queues.get(names.stream(p)), warnings)
        rows.append(row)
    return {
        "cluster": settings.cluster, "partitions": partitions, "replicas": replicas,
        "members": list(members.values()), "partition_state": rows, "warnings": warnings,
        "autoscaler": autoscaler, "unreachable": unreachable,
        "rabbitmq": _rabbitmq_part(view, warnings),
    }


def _bounds(settings: Settings, partitions: int) -> dict[int, StreamBounds]:
    """Every stream's bounds, read through one node; the streams it could not read,
    through the next one, once per node at most. Right after a node of a cluster dies
    or comes back, RabbitMQ 3.10 refuses or crashes stream consumers on some nodes
    for a few seconds ("does not have a replica on the local node"; 541
    INTERNAL_ERROR from ``{case_clause,{error,nodedown}}`` in
    rabbit_stream_queue:init). What no node could read keeps its ``error``."""
    nodes = Nodes(settings)
    bounds: dict[int, StreamBounds] = {}
    todo = list(range(partitions))
    for left in range(len(nodes), 0, -1):
        conn = connect_blocking(settings, name="liftline-status", attempts=2,
                                timeout_s=settings.query_timeout_s, nodes=nodes)
        try:
            read = stream_bounds(conn, Names(settings.cluster), todo)
        except BrokerError as exc:
            if left == 1:
                raise
            log.info("stream bounds through %s failed (%s); trying the next node",
                     mask_url(nodes.current), exc)
            continue
        finally:
            if conn.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    conn.close()
        bounds.update(read)
        todo = [p for p, b in read.items() if b.error is not None]
        if not todo:
            break
        log.info("stream bounds of partitions %s refused through %s; trying the next node",
                 todo, mask_url(nodes.current))
    return bounds


def _gap_columns(row: dict[str, Any], members: dict[str, dict[str, Any]],
                 flushed: dict[str, list[list[int]]], warnings: list[str]) -> None:
    """Writes missing from the partition's stream: the primary's count (it may not
    have flushed it yet) and the flushed ranges, which name the producers."""
    p = row["partition"]
    report = members.get(row["primary"] or "", {}).get("partitions", {}).get(p, {})
    flushed_missing = sum(hi - lo + 1 for ranges in flushed.values() for lo, hi in ranges)
    missing = max(int(report.get("missing", 0)), flushed_missing)
    row["missing_writes"] = missing
    row["gaps"] = {pid: ranges for pid, ranges in sorted(flushed.items())}
    if missing:
        named = "; ".join(f"producer {pid}: seqs " + ", ".join(
            f"{lo}-{hi}" if lo != hi else f"{lo}" for lo, hi in ranges[:5])
            for pid, ranges in sorted(flushed.items())[:3])
        warnings.append(f"partition {p}: {missing} write(s) missing from the stream"
                        + (f" ({named})" if named else "")
                        + "; refused writes (their producer was told) or lost ones: "
                          "see liftline deadletters")


def _placement_columns(row: dict[str, Any], placement: Any, warnings: list[str]) -> None:
    p = row["partition"]
    if placement is None:
        row.update(stream_leader=None, stream_online=[], stream_members=[])
        return
    row.update(stream_leader=placement.leader, stream_online=sorted(placement.online),
               stream_members=sorted(placement.members))
    # A node that is down is warned about once; a stream without a majority of its
    # replicas online cannot take writes, and says so.
    if placement.members and 2 * len(placement.online) <= len(placement.members):
        warnings.append(f"partition {p}: only {len(placement.online)} of "
                        f"{len(placement.members)} stream replicas online; writes to it fail")


def _rabbitmq_part(view: ClusterView | None, warnings: list[str]) -> dict[str, Any] | None:
    """The broker's nodes and the placement of the job queues (None: no management API)."""
    if view is None:
        return None
    for node, running in sorted(view.nodes.items()):
        if not running:
            warnings.append(f"rabbitmq node {node} is down")
    jobs = [q.to_dict() for _, q in sorted(view.queues.items()) if q.kind == "quorum"]
    return {"source": view.source,
            "nodes": [{"name": n, "running": r} for n, r in sorted(view.nodes.items())],
            "job_queues": jobs}


def _partition_row(p: int, state: dict[str, str], owner: str | None,
                   members: dict[str, dict[str, Any]], bounds: Any, now: float,
                   replicas: int, warnings: list[str]) -> dict[str, Any]:
    first, last = bounds.first, bounds.last
    flushed = int(state.get("offset", -1))
    holders = []
    for member_id, member in members.items():
        report = member["partitions"].get(p)
        if report is not None:
            holders.append({
                "member": member_id, "role": report.get("role", "primary"),
                "applied_offset": report["applied"],
                "lag": max(0, last - report["applied"]) if last >= 0 else 0,
                "keys": report["keys"],
                # Writes applied since this member loaded the partition (a counter
                # that starts again with each holder), for rates.
                "writes": report.get("writes"),
            })
    holders.sort(key=lambda h: (h["role"] != "primary", h["member"]))
    primary = next((h for h in holders if h["role"] == "primary" and h["member"] == owner), None)
    applied = primary["applied_offset"] if primary else flushed
    margin = flushed - first if last >= 0 else None
    flushed_at = float(state["flushed_at"]) if "flushed_at" in state else None
    row = {
        "partition": p, "primary": primary["member"] if primary else None,
        "standbys": [h["member"] for h in holders if h["role"] == "standby"],
        "epoch": int(state.get("epoch", 0)),
        "applied_offset": applied, "flushed_offset": flushed,
        "stream_first": first, "stream_tail": last,
        "lag": max(0, last - applied) if last >= 0 else 0,
        "keys": primary["keys"] if primary else None,
        "replicas": holders,
        "retention_margin": margin,
        "flush_age_s": None if flushed_at is None else round(now - flushed_at, 3),
        "stream_error": bounds.error,
    }
    if bounds.error is not None:
        warnings.append(f"partition {p}: stream offsets unreadable ({bounds.error}); "
                        "lag and retention margin unknown")
    if primary is None and (last >= 0 or members):
        warnings.append(f"partition {p}: no live primary")
    if members and len(holders) < min(replicas, len(members)):
        warnings.append(f"partition {p}: {len(holders)} of {replicas} replicas")
    if margin is not None and first > flushed + 1:
        warnings.append(f"partition {p}: retention dropped unflushed entries "
                        f"(first retained {first} > flushed {flushed} + 1)")
    elif margin is not None and flushed >= 0 and margin < THIN_MARGIN and first > 0:
        warnings.append(f"partition {p}: thin retention margin ({margin} entries)")
    if primary and row["lag"] == 0 and applied > flushed and row["flush_age_s"] is not None \
            and row["flush_age_s"] > STALE_FLUSH_S:
        warnings.append(f"partition {p}: last flush {row['flush_age_s']}s ago")
    return row
