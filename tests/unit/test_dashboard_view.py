"""The dashboard's view model: readings in, rows and series out (no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from liftline.dashboard import view


def member(mid: str, beat: float, parts: dict[int, tuple[str, int]]) -> dict[str, Any]:
    return {"id": mid, "host": "h", "pid": 100, "beat": beat, "heartbeat_age_s": 0.2,
            "replicas": 2, "partitions": {p: {"role": role, "applied": 10, "keys": 5,
                                              "writes": w} for p, (role, w) in parts.items()}}


def row(p: int, primary: str | None, holders: list[tuple[str, str, int | None]], *,
        lag: int = 0, margin: int | None = 100, first: int = 0, flushed: int = 10,
        applied: int = 10, flush_age: float | None = 0.2) -> dict[str, Any]:
    return {"partition": p, "primary": primary,
            "standbys": [m for m, role, _ in holders if role == "standby"], "epoch": 1,
            "applied_offset": applied, "flushed_offset": flushed, "stream_first": first,
            "stream_tail": 20, "lag": lag, "keys": 5, "retention_margin": margin,
            "flush_age_s": flush_age,
            "replicas": [{"member": m, "role": role, "applied_offset": 10, "lag": 1,
                          "keys": 5, "writes": w} for m, role, w in holders]}


def reading(at: float, writes: dict[str, dict[int, int]], beats: dict[str, float], *,
            primaries: dict[int, str], unreachable: list[str] = (), lag: int = 3
            ) -> dict[str, Any]:
    """Two partitions; ``writes[member][p]``: what ``member`` reports for ``p``."""
    members, rows = [], []
    for mid, counts in writes.items():
        members.append(member(mid, beats[mid], {
            p: ("primary" if primaries.get(p) == mid else "standby", w)
            for p, w in counts.items()}))
    for p in (0, 1):
        holders = [(mid, "primary" if primaries.get(p) == mid else "standby", c[p])
                   for mid, c in writes.items() if p in c]
        rows.append(row(p, primaries.get(p), holders, lag=lag))
    return {
        "at": at, "took_s": 0.1,
        "unreachable": [{"server": s, "error": "down"} for s in unreachable],
        "status": {"cluster": "c", "partitions": 2, "replicas": 2, "members": members,
                   "partition_state": rows, "warnings": [], "autoscaler": None,
                   "unreachable": []},
        "redis": {"reachable": True}, "rabbitmq": {"reachable": True},
        "jobs": {"stats": [], "watched": [], "dead": [], "ready": 0, "dead_in_queue": 0},
        "autoscale_samples": [],
    }


PRIMARIES = {0: "a", 1: "b"}


def test_writes_per_s_from_the_primaries_counters_and_beats() -> None:
    history = view.History(rate_span_s=5)
    history.add(reading(100, {"a": {0: 0, 1: 0}, "b": {0: 0, 1: 0}}, {"a": 100, "b": 100},
                        primaries=PRIMARIES))
    assert history.rate() is None, "one beat: no rate yet"
    # a applied 1,000 to partition 0 in 1 s, b 500 to partition 1 in 0.5 s;
    # standbys' counters do not count.
    history.add(reading(101, {"a": {0: 1000, 1: 999_999}, "b": {0: 999_999, 1: 500}},
                        {"a": 101, "b": 100.5}, primaries=PRIMARIES))
    assert history.rate() == pytest.approx(2000.0)
    # The same beats read again change nothing.
    history.add(reading(101.5, {"a": {0: 1000, 1: 0}, "b": {0: 0, 1: 500}},
                        {"a": 101, "b": 100.5}, primaries=PRIMARIES))
    assert history.rate() == pytest.approx(2000.0)
    assert [p[0] for p in history.series()["writes_per_s"]] == [101, 101.5]


def test_the_rate_is_averaged_over_the_span_and_older_beats_drop_out() -> None:
    history = view.History(rate_span_s=2)
    for n in range(6):  # partition 0: 100 writes/s for 3 s, then 400/s
        w = n * 100 if n <= 3 else 300 + (n - 3) * 400
        history.add(reading(n, {"a": {0: w}, "b": {1: 0}}, {"a": n, "b": n},
                            primaries=PRIMARIES))
    # Beats kept: the oldest such that the second oldest is under 2 s old → t=3..5.
    assert history.rate() == pytest.approx((1100 - 300) / 2)


def test_a_new_primary_counts_anew_so_a_failover_is_a_dip_not_a_spike() -> None:
    history = view.History()
    history.add(reading(0, {"a": {0: 0}, "b": {1: 0}}, {"a": 0, "b": 0}, primaries=PRIMARIES))
    history.add(reading(1, {"a": {0: 100}, "b": {1: 100}}, {"a": 1, "b": 1},
                        primaries=PRIMARIES))
    assert history.rate() == pytest.approx(200)
    # a dies; b takes partition 0, whose counter (since b loaded it) is 50,000.
    moved = {0: "b", 1: "b"}
    history.add(reading(2, {"b": {0: 50_000, 1: 200}}, {"b": 2}, primaries=moved))
    assert history.rate() == pytest.approx(100), "partition 0 adds nothing yet"
    history.add(reading(3, {"b": {0: 50_100, 1: 300}}, {"b": 3}, primaries=moved))
    assert history.rate() == pytest.approx((50_100 - 50_000) / 1 + (300 - 100) / 2)


def test_a_counter_that_goes_back_starts_over() -> None:
    history = view.History()
    history.add(reading(0, {"a": {0: 500}, "b": {1: 0}}, {"a": 0, "b": 0}, primaries=PRIMARIES))
    history.add(reading(1, {"a": {0: 10}, "b": {1: 0}}, {"a": 1, "b": 1}, primaries=PRIMARIES))
    assert history.rate() == 0.0  # partition 1 only; partition 0 has one beat again


def test_no_redis_leaves_a_gap_and_no_rabbitmq_no_lag() -> None:
    history = view.History()
    history.add(reading(0, {"a": {0: 0}, "b": {1: 0}}, {"a": 0, "b": 0}, primaries=PRIMARIES))
    history.add(reading(1, {"a": {0: 10}, "b": {1: 0}}, {"a": 1, "b": 1}, primaries=PRIMARIES,
                        unreachable=["redis"]))
    history.add(reading(2, {"a": {0: 10}, "b": {1: 0}}, {"a": 2, "b": 2}, primaries=PRIMARIES,
                        unreachable=["rabbitmq"], lag=7))
    series = history.series()
    assert [t for t, _ in series["writes_per_s"]] == [2]
    assert [t for t, _ in series["lag"]] == [0]
    assert series["lag"] == [[0, 6]]  # two partitions at lag 3


def test_the_window_keeps_the_last_minutes_only() -> None:
    history = view.History(window_s=10, max_points=5)
    for t in range(20):
        history.add(reading(t, {"a": {0: t}, "b": {1: 0}}, {"a": t, "b": t},
                            primaries=PRIMARIES))
    times = [t for t, _ in history.series()["lag"]]
    assert times == [15, 16, 17, 18, 19]  # at most max_points, all within window_s


@pytest.mark.parametrize(("kwargs", "flags"), [
    ({}, []),
    ({"primary": None}, ["no primary"]),
    ({"margin": 500, "first": 100, "flushed": 600, "applied": 600}, ["thin retention margin"]),
    ({"margin": -5, "first": 15, "flushed": 10}, ["retention dropped unflushed entries"]),
    ({"margin": 5, "first": 0}, []),  # nothing was ever dropped: not thin
    ({"flush_age": 45.0, "applied": 12}, ["flush overdue"]),
    ({"flush_age": 45.0, "applied": 10}, []),  # nothing new to flush
])
def test_partition_flags(kwargs: dict[str, Any], flags: list[str]) -> None:
    primary = kwargs.pop("primary", "a")
    line = view.partition_row(row(0, primary, [("a", "primary", 1), ("b", "standby", 1)],
                                  **kwargs), replicas=2, members=2)
    assert line["flags"] == flags


def test_short_replicas_are_flagged_only_when_members_could_hold_them() -> None:
    alone = row(0, "a", [("a", "primary", 1)])
    assert view.partition_row(alone, replicas=2, members=2)["flags"] == ["1 of 2 replicas"]
    assert view.partition_row(alone, replicas=2, members=1)["flags"] == []


def test_build_gives_rows_members_summary_and_jobs() -> None:
    history = view.History()
    first = reading(0, {"a": {0: 0, 1: 0}, "b": {0: 0, 1: 0}}, {"a": 0, "b": 0},
                    primaries=PRIMARIES)
    first["jobs"] = {
        "stats": [{"name": "x", "queued": 2, "running": 1, "retrying": 1, "succeeded": 5,
                   "failed_attempts": 3, "dead": 4},
                  {"name": "y", "queued": 1, "running": 0, "retrying": 0, "succeeded": 0,
                   "failed_attempts": 0, "dead": 0}],
        "ready": 3, "dead_in_queue": 2,
        "dead": [{"id": "j1", "job": "x", "attempts": 3, "error": "E" * 1000,
                  "dead_at_ms": 1500, "args": {"n": 1}}],
        "watched": [{"id": "j0", "name": "x", "state": "succeeded", "attempt": 1,
                     "result": {"ok": True}}],
    }
    history.add(first)
    out = view.build(first, history)
    assert [p["partition"] for p in out["partitions"]] == [0, 1]
    assert out["partitions"][0]["standbys"] == ["b"] and out["partitions"][0]["flags"] == []
    assert out["summary"]["members"] == 2 and out["summary"]["lag"] == 6
    assert out["summary"]["jobs"] == {"queued": 3, "running": 1, "retrying": 1,
                                      "succeeded": 5, "failed_attempts": 3, "dead": 2,
                                      "ready": 3}
    assert {m["id"]: (m["primaries"], m["standbys"]) for m in out["members"]} == \
        {"a": (1, 1), "b": (1, 1)}
    dead = out["jobs"]["dead"][0]
    assert len(dead["error"]) == view.TEXT_MAX and dead["error"].endswith("…")
    assert dead["args"] == '{"n": 1}' and dead["dead_at"] == 1.5
    assert out["jobs"]["watched"][0]["result"] == '{"ok": true}'
    assert out["autoscaler"] is None


def test_dead_count_is_unknown_without_rabbitmq() -> None:
    assert view.jobs_view({"stats": [], "dead_in_queue": None})["totals"]["dead"] is None


def test_autoscaler_changes_newest_first_and_worker_series() -> None:
    samples = [{"t": t, "backlog": b, "current": c, "desired": d, "action": a}
               for t, b, c, d, a in [(1, 0, 1, 1, "steady"), (2, 9000, 1, 3, "up"),
                                     (3, 9000, 3, 3, "steady"), (4, 0, 3, 1, "down")]]
    out = view.autoscaler_view({"last": {"action": "down"}, "pool": {"backend": "local"},
                                "age_s": 0.5}, samples)
    assert out is not None
    assert [c["action"] for c in out["changes"]] == ["down", "up"]
    assert out["series"]["desired"] == [[1, 1], [2, 3], [3, 3], [4, 1]]
    assert out["backend"] == "local"
    assert view.autoscaler_view(None, []) is None
