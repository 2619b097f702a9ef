"""Cluster state for `liftline status`: members, and per partition where it stands."""

from __future__ import annotations

import time
from typing import Any

from liftline.queue.connection import connect_blocking
from liftline.queue.inspect import stream_bounds
from liftline.queue.topology import Names
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import RedisStore, connect
from liftline.workers.membership import live_members

# Warn when fewer than this many stream entries separate retention from unflushed data.
THIN_MARGIN = 1000
STALE_FLUSH_S = 30.0


def gather(settings: Settings) -> dict[str, Any]:
    """A snapshot of the cluster: members, partitions, warnings (JSON-ready)."""
    client = connect(settings.redis_url)
    try:
        store = RedisStore(client, settings.cluster)
        keys = Keys(settings.cluster)
        stored_p = store.cluster_partitions()
        partitions = stored_p or settings.partitions
        members = live_members(client, keys)
        owners = {int(k): v.decode() for k, v in client.hgetall(keys.owners).items()}
        states = [store.state(p) for p in range(partitions)]
    finally:
        client.close()
    conn = connect_blocking(settings, name="liftline-status", attempts=2)
    try:
        bounds = stream_bounds(conn, Names(settings.cluster), partitions)
    finally:
        conn.close()
    now = time.time()
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    if stored_p is None:
        warnings.append(f"cluster {settings.cluster!r} does not exist yet (no writes or workers)")
    for p in range(partitions):
        state = states[p]
        owner = owners.get(p)
        live = owner in members if owner else False
        report = members[owner]["partitions"].get(p, {}) if live and owner else {}
        flushed = int(state.get("offset", -1))
        applied = int(report.get("applied", flushed))
        first, last = bounds[p].first, bounds[p].last
        lag = max(0, last - applied) if last >= 0 else 0
        margin = flushed - first if last >= 0 else None
        flushed_at = float(state["flushed_at"]) if "flushed_at" in state else None
        row = {
            "partition": p, "owner": owner if live else None,
            "epoch": int(state.get("epoch", 0)),
            "applied_offset": applied, "flushed_offset": flushed,
            "stream_first": first, "stream_tail": last, "lag": lag,
            "keys": report.get("keys"),
            "retention_margin": margin,
            "flush_age_s": None if flushed_at is None else round(now - flushed_at, 3),
        }
        rows.append(row)
        if owner is None or not live:
            if last >= 0:
                warnings.append(f"partition {p}: no live owner")
        if margin is not None and first > flushed + 1:
            warnings.append(f"partition {p}: retention dropped unflushed entries "
                            f"(first retained {first} > flushed {flushed} + 1)")
        elif margin is not None and flushed >= 0 and margin < THIN_MARGIN and first > 0:
            warnings.append(f"partition {p}: thin retention margin ({margin} entries)")
        if live and lag == 0 and applied > flushed and row["flush_age_s"] is not None \
                and row["flush_age_s"] > STALE_FLUSH_S:
            warnings.append(f"partition {p}: last flush {row['flush_age_s']}s ago")
    return {
        "cluster": settings.cluster, "partitions": partitions,
        "members": list(members.values()), "partition_state": rows, "warnings": warnings,
    }
