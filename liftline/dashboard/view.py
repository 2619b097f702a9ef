"""The dashboard's view model: readings (see :mod:`.collect`) → what the page shows.

Pure: no I/O, no clock of its own (times come from the readings), so every
rule here is unit-tested on made-up readings. The page only lays the view out.

Writes/s come from the workers' heartbeat reports: each primary reports the
writes it applied to a partition since it loaded it, with the time of the beat.
A partition's rate is the change of that counter over the last few seconds of
beats of the same primary; a partition that changed primary starts over (until
its new primary's second beat it adds nothing), so a failover shows as a short
dip, never as a spike.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from liftline.status import STALE_FLUSH_S, THIN_MARGIN

WINDOW_S = 600.0  # the charts show the last ten minutes
MAX_POINTS = 1200  # and never more points than this, whatever the reading rate
RATE_SPAN_S = 5.0  # writes/s are averaged over about this long (beats come every ~1 s)
TEXT_MAX = 300  # characters of an error, an argument list or a result shown


class History:
    """The totals of the last ``window_s`` seconds of readings: writes/s and lag."""

    def __init__(self, window_s: float = WINDOW_S, max_points: int = MAX_POINTS,
                 rate_span_s: float = RATE_SPAN_S) -> None:
        self.window_s = window_s
        self.rate_span_s = rate_span_s
        self.points: deque[tuple[float, float | None, int | None]] = deque(maxlen=max_points)
        # Per partition: its primary, and the (beat time, writes) it reported over
        # about the last rate_span_s seconds.
        self._beats: dict[int, tuple[str, deque[tuple[float, int]]]] = {}

    def add(self, reading: dict[str, Any]) -> None:
        """Take one reading's totals (a reading without Redis adds a gap)."""
        at = float(reading["at"])
        down = {u["server"] for u in reading.get("unreachable", [])}
        status = reading["status"]
        rate: float | None = None
        if "redis" not in down:
            self._count(primary_counts(status))
            rate = self.rate()
        lag = None if down else sum(int(r["lag"]) for r in status["partition_state"])
        self.points.append((at, rate, lag))
        while self.points and self.points[0][0] < at - self.window_s:
            self.points.popleft()

    def _count(self, counts: dict[int, tuple[str, int, float]]) -> None:
        for p in set(self._beats) - set(counts):  # no primary now: no rate
            del self._beats[p]
        for p, (member, writes, beat) in counts.items():
            held = self._beats.get(p)
            if held is None or held[0] != member or writes < held[1][-1][1]:
                # A new primary (or one that loaded the partition again) counts anew.
                self._beats[p] = (member, deque([(beat, writes)]))
                continue
            beats = held[1]
            if beat > beats[-1][0]:  # the same beat read twice adds nothing
                beats.append((beat, writes))
            while len(beats) > 2 and beats[-1][0] - beats[1][0] >= self.rate_span_s:
                beats.popleft()

    def rate(self) -> float | None:
        """Writes/s now: per partition over its last ~rate_span_s seconds of beats,
        summed; None while no partition has two beats of one primary yet."""
        rates = [(b[-1][1] - b[0][1]) / (b[-1][0] - b[0][0])
                 for _, b in self._beats.values() if len(b) >= 2]
        return round(sum(rates), 1) if rates else None

    def series(self) -> dict[str, list[list[float]]]:
        """``writes_per_s`` and ``lag`` as ``[[t, value], …]``, oldest first (gaps left out)."""
        return {
            "writes_per_s": [[t, r] for t, r, _ in self.points if r is not None],
            "lag": [[t, lag] for t, _, lag in self.points if lag is not None],
        }

    def latest_rate(self) -> float | None:
        return next((r for _, r, _ in reversed(self.points) if r is not None), None)


def primary_counts(status: dict[str, Any]) -> dict[int, tuple[str, int, float]]:
    """Per partition with a live primary that reports its writes: (primary, writes, beat)."""
    beats = {m["id"]: float(m.get("beat", 0.0)) for m in status.get("members", [])}
    out: dict[int, tuple[str, int, float]] = {}
    for row in status["partition_state"]:
        primary = row.get("primary")
        holder = next((h for h in row.get("replicas", []) if h["member"] == primary), None)
        if primary and holder is not None and holder.get("writes") is not None \
                and primary in beats:
            out[int(row["partition"])] = (primary, int(holder["writes"]), beats[primary])
    return out


def build(reading: dict[str, Any], history: History) -> dict[str, Any]:
    """What the page shows for ``reading`` (already added to ``history``)."""
    status = reading["status"]
    rows = [partition_row(r, status["replicas"], len(status["members"]))
            for r in status["partition_state"]]
    jobs = jobs_view(reading["jobs"])
    down = {u["server"] for u in reading["unreachable"]}
    lag = None if down else sum(r["lag"] for r in rows)
    return {
        "cluster": status["cluster"], "at": reading["at"], "took_s": reading["took_s"],
        "unreachable": reading["unreachable"], "warnings": status["warnings"],
        "summary": {
            "members": len(status["members"]), "partitions": status["partitions"],
            "replicas": status["replicas"], "writes_per_s": history.latest_rate(),
            "lag": lag, "jobs": jobs["totals"],
        },
        "members": [member_row(m) for m in status["members"]],
        "partitions": rows,
        "series": history.series(),
        "autoscaler": autoscaler_view(status.get("autoscaler"), reading["autoscale_samples"]),
        "servers": {"rabbitmq": reading["rabbitmq"], "redis": reading["redis"]},
        "jobs": jobs,
    }


def member_row(member: dict[str, Any]) -> dict[str, Any]:
    roles = [r.get("role", "primary") for r in member["partitions"].values()]
    return {
        "id": member["id"], "host": member["host"], "pid": member["pid"],
        "heartbeat_age_s": member["heartbeat_age_s"],
        "primaries": roles.count("primary"), "standbys": roles.count("standby"),
        "keys": sum(int(r.get("keys", 0)) for r in member["partitions"].values()
                    if r.get("role", "primary") == "primary"),
    }


def partition_row(row: dict[str, Any], replicas: int, members: int) -> dict[str, Any]:
    """One partition's line, with ``flags`` naming what deserves a look."""
    flags = []
    if row["primary"] is None:
        flags.append("no primary")
    if members and len(row["replicas"]) < min(replicas, members):
        flags.append(f"{len(row['replicas'])} of {replicas} replicas")
    margin, first = row["retention_margin"], row["stream_first"]
    if margin is not None and first > row["flushed_offset"] + 1:
        flags.append("retention dropped unflushed entries")
    elif margin is not None and row["flushed_offset"] >= 0 and margin < THIN_MARGIN \
            and first > 0:
        flags.append("thin retention margin")
    age = row["flush_age_s"]
    if age is not None and age > STALE_FLUSH_S and row["applied_offset"] > row["flushed_offset"]:
        flags.append("flush overdue")
    return {
        "partition": row["partition"], "primary": row["primary"],
        "standbys": row["standbys"], "epoch": row["epoch"],
        "applied": row["applied_offset"], "flushed": row["flushed_offset"],
        "tail": row["stream_tail"], "lag": row["lag"],
        "replica_lags": [h["lag"] for h in row["replicas"] if h["role"] != "primary"],
        "flush_age_s": age, "retention_margin": margin, "keys": row["keys"],
        "flags": flags,
    }


def jobs_view(jobs: dict[str, Any]) -> dict[str, Any]:
    """Per-name counters, totals, the dead jobs listed, and the watched jobs."""
    names = jobs.get("stats") or []
    totals: dict[str, int | None] = {
        k: sum(int(r.get(k, 0)) for r in names)
        for k in ("queued", "running", "retrying", "succeeded", "failed_attempts")}
    in_queue = jobs.get("dead_in_queue")
    totals["dead"] = in_queue  # None: RabbitMQ did not answer
    totals["ready"] = jobs.get("ready")
    return {
        "totals": totals, "names": names,
        "dead": [dead_row(d) for d in jobs.get("dead") or []],
        "dead_in_queue": in_queue,
        "watched": [watched_row(w) for w in jobs.get("watched") or []],
    }


def dead_row(dead: dict[str, Any]) -> dict[str, Any]:
    at = dead.get("dead_at_ms")
    return {"id": dead["id"], "job": dead.get("job"), "attempts": dead.get("attempts"),
            "error": clip(str(dead.get("error") or "")),
            "args": clip(_json(dead.get("args"))) if "args" in dead else None,
            "dead_at": None if at is None else at / 1000.0}


def watched_row(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "name": record.get("name"), "state": record.get("state"),
            "attempt": record.get("attempt"), "updated": record.get("updated"),
            "error": clip(str(record.get("error") or "")) or None,
            "result": clip(_json(record["result"])) if "result" in record else None}


def autoscaler_view(state: dict[str, Any] | None, samples: list[dict[str, Any]]
                    ) -> dict[str, Any] | None:
    """The last decision and the last change, recent changes, and workers over time."""
    if not state and not samples:
        return None
    state = state or {}
    changes = [s for s in samples if s.get("action") in ("up", "down")]
    return {
        "last": state.get("last"), "change": state.get("change"),
        "backend": (state.get("pool") or {}).get("backend"), "age_s": state.get("age_s"),
        "changes": list(reversed(changes[-10:])),
        "series": {"current": [[s["t"], s["current"]] for s in samples],
                   "desired": [[s["t"], s["desired"]] for s in samples]},
    }


def clip(text: str, limit: int = TEXT_MAX) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except ValueError:  # a circular structure cannot come from msgpack; be safe anyway
        return repr(value)
