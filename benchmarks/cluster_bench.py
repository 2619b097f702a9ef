"""Scenario cluster: failover time, recovery of a 1M-key partition set, R=2 vs R=1 writes/s.

1. Failover: 3 workers, R=2, heartbeat 0.5 s, member TTL 2 s, a steady paced load;
   SIGKILL the primary of partition 0 and time, from the kill, (a) the new primary's
   claim (its epoch in Redis), (b) its first flush (Redis' flushed offset of partition 0
   moves past the one at the kill, under the new epoch) and (c) what the issue asks
   for: the new primary reporting (``live_members``) an applied offset beyond the one
   the victim last reported. Repeated (a fresh worker replaces the victim each time).
2. Recovery: one worker takes in K distinct keys (default 1,000,000) and flushes them;
   SIGTERM; a few writes arrive while no worker runs (the stream's tail past the
   flush); then a fresh worker starts, and the time from its start until it has
   taken every partition and applied up to the stream tail (Redis' watermarks
   cover every write, and its report shows applied == flushed ≥ tail everywhere).
   Its log's "took partition … in …s" lines give the load time per partition.
3. Writes/s with 3 workers at R=1 and at R=2: the producer flat out for D seconds
   per R (30; 10 with ``--quick``), in 10 s slices that alternate between the two
   clusters (both up at once) so that both see the same shared machine; applied +
   flushed writes/s (each slice's first submit → Redis covers its writes).
"""

from __future__ import annotations

import datetime
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks.cluster import (
    Tracker,
    cleanup,
    flushed_count,
    redis_client,
    watermarks,
)
from benchmarks.cluster_nodes import (
    FAILOVER_LOAD_PER_S,
    FAST,
    Node,
    SteadyLoad,
    partition_state,
    stop_all,
    table,
    wait_settled,
)
from benchmarks.cluster_report import figures
from benchmarks.context import Context
from benchmarks.env import CpuMeter
from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from benchmarks.workload import backlog_ops
from liftline.producer import Producer
from liftline.queue.connection import connect_blocking
from liftline.queue.inspect import stream_bounds
from liftline.queue.topology import Names
from liftline.settings import Settings
from liftline.store.keys import Keys

WORKERS = 3
RECOVERY_TAIL_WRITES = 10_000
TOOK_RE = re.compile(r"^(\S+ \S+) INFO \S+: took partition (\d+) as (\w+) \(epoch (\d+)\): "
                     r"(\d+) keys at offset (-?\d+) in ([\d.]+)s")


# -- 1. failover ---------------------------------------------------------------
def _failover(ctx: Context) -> list[dict[str, Any]]:
    settings = ctx.settings("cl-failover").replace(replicas=2, **FAST)
    keys = Keys(settings.cluster)
    client = redis_client(settings)
    nodes: list[Node] = []
    load: SteadyLoad | None = None
    runs: list[dict[str, Any]] = []
    try:
        Producer(settings).close()  # creates the cluster and its streams
        nodes = [Node(settings, ctx.log_dir, f"n{i}") for i in range(WORKERS)]
        wait_settled(client, settings, nodes)
        load = SteadyLoad(settings, FAILOVER_LOAD_PER_S)
        load.start()
        time.sleep(2.0)
        for rep in range(1, ctx.sizes.failover_repeats + 1):
            before = wait_settled(client, settings, nodes)
            time.sleep(1.0)  # a little steady load on the settled table
            before = table(client, settings)
            victim = before[0]["primary"]
            if victim is None:
                raise RuntimeError("partition 0 has no primary before the kill")
            victim_pid = before[-1]["members"][victim]["pid"]
            node = next(n for n in nodes if n.pid == victim_pid)
            standbys = [m for m in before[0]["holders"] if m != victim]
            applied_at_kill = before[0]["holders"][victim]["applied"]
            epoch0, flushed0 = partition_state(client, keys, 0)
            node.kill()
            killed = time.monotonic()
            say(f"cluster: failover {rep}: SIGKILL of {victim} (pid {victim_pid}), primary of "
                f"partition 0 (reported applied {applied_at_kill}, flushed {flushed0}, "
                f"epoch {epoch0})")
            claim_s = flush_s = applied_s = None
            new_primary = None
            deadline = Deadline(settings.member_ttl_s + 20)
            while not deadline.passed() and (applied_s is None or flush_s is None):
                now = time.monotonic() - killed
                epoch, flushed = partition_state(client, keys, 0)
                if claim_s is None and epoch > epoch0:
                    claim_s = now
                if flush_s is None and epoch > epoch0 and flushed > flushed0:
                    flush_s = now
                if applied_s is None:
                    t = table(client, settings)
                    p0 = t[0]
                    if p0["primary"] not in (None, victim) \
                            and p0["holders"][p0["primary"]]["applied"] > applied_at_kill:
                        applied_s = now
                        new_primary = p0["primary"]
                time.sleep(0.02)
            nodes.remove(node)
            run = {"rep": rep, "victim": victim, "new_primary": new_primary,
                   "new_primary_was_standby": new_primary in standbys,
                   "claim_s": _r(claim_s), "first_flush_s": _r(flush_s),
                   "applied_reported_s": _r(applied_s)}
            runs.append(run)
            say(f"cluster: failover {rep}: claim {_fmt_s(claim_s)}, first flush by the new "
                f"primary {_fmt_s(flush_s)}, its report shows applied > {applied_at_kill} "
                f"{_fmt_s(applied_s)} (new primary {new_primary}, was standby: "
                f"{run['new_primary_was_standby']})")
            if load.error is not None:
                raise load.error
            nodes.append(Node(settings, ctx.log_dir, f"r{rep}"))
        load.stop()
        if load.tracker.failed:
            ctx.results.notes.append(f"cluster failover: {load.tracker.failed} writes failed: "
                                     f"{load.tracker.first_error}")
        load = None
    finally:
        if load is not None:
            load.halt.set()
            load.join(10)
            load.producer.close()
        stop_all(nodes)
        client.close()
        cleanup(settings)
    return runs


# -- 2. recovery ---------------------------------------------------------------
def _produce_backlog(settings: Settings, tracker: Tracker, producer: Producer, count: int,
                     keyspace: int, limit_s: float) -> None:
    deadline = Deadline(limit_s)
    ticker = Ticker(3.0)
    add, submit = tracker.add, producer.submit
    for i, (op, key, value) in enumerate(backlog_ops(count, keyspace=keyspace)):
        add(submit(op, key, value))
        if i % 10_000 == 0:
            tracker.poll()
            if deadline.passed():
                raise RuntimeError(f"producing {count:,} writes took over {limit_s:.0f}s")
            if ticker.due():
                say(f"  {tracker.submitted:,} submitted, {tracker.confirmed:,} confirmed")
    if not tracker.wait_all(Deadline(60)):
        raise RuntimeError("confirms did not arrive in time")
    if tracker.failed:
        raise RuntimeError(f"{tracker.failed} writes failed: {tracker.first_error}")


def _wait_covered(client: redis.Redis, settings: Settings, producer_id: str,
                  wanted: list[int], limit_s: float, node: Node) -> float | None:
    deadline = Deadline(limit_s)
    total = sum(wanted)
    ticker = Ticker(3.0)
    while not deadline.passed():
        covered = flushed_count(watermarks(client, settings, producer_id), wanted)
        if covered >= total:
            return time.monotonic()
        node._check_alive()
        if ticker.due():
            say(f"  {covered:,}/{total:,} flushed")
        time.sleep(0.05)
    return None


def _recovery(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings("cl-recovery").replace(**FAST)
    client = redis_client(settings)
    count = ctx.sizes.recovery_keys
    out: dict[str, Any] = {"keys": count, "tail_writes": RECOVERY_TAIL_WRITES,
                           "heartbeat_s": settings.heartbeat_s}
    nodes: list[Node] = []
    producer = Producer(settings)
    try:
        tracker = Tracker(settings.partitions)
        first = Node(settings, ctx.log_dir, "load")
        nodes.append(first)
        first.wait_registered(client)
        first.wait_serving(client)
        say(f"cluster: recovery: writing {count:,} distinct keys with one worker "
            f"(pid {first.pid}) running")
        began = time.monotonic()
        _produce_backlog(settings, tracker, producer, count, count, ctx.sizes.apply_limit_s)
        wanted = list(tracker.submitted_seq)
        if _wait_covered(client, settings, producer.producer_id, wanted,
                         ctx.sizes.apply_limit_s, first) is None:
            raise RuntimeError("the first worker did not flush the keys in time")
        out["load_s"] = round(time.monotonic() - began, 2)
        stop_s = first.stop()
        out.update(first_stop_s=round(stop_s, 2), first_exit=first.exit_code)
        keys_in_redis = _keys_in_redis(client, settings)
        out["keys_in_redis"] = keys_in_redis
        say(f"cluster: recovery: {keys_in_redis:,} keys flushed in {out['load_s']:.1f}s; "
            f"worker stopped (exit {first.exit_code}, {stop_s:.2f}s); writing "
            f"{RECOVERY_TAIL_WRITES:,} more with no worker running")
        for i in range(RECOVERY_TAIL_WRITES):
            tracker.add(producer.submit("incr", f"tail:{i % 1000}", 1))
        if not tracker.wait_all(Deadline(60)) or tracker.failed:
            raise RuntimeError(f"tail writes not confirmed: {tracker.first_error}")
        wanted = list(tracker.submitted_seq)
        conn = connect_blocking(settings, name="bench-stream-bounds")
        try:
            bounds = stream_bounds(conn, Names(settings.cluster), list(range(settings.partitions)))
        finally:
            conn.close()
        tail = {p: b.last for p, b in bounds.items()}
        flushed_before = {p: partition_state(client, Keys(settings.cluster), p)[1]
                          for p in range(settings.partitions)}
        out["entries_past_flush"] = sum(max(0, tail[p] - flushed_before[p]) for p in tail)

        # The fresh worker: timed from just before its process starts.
        node = Node(settings, ctx.log_dir, "fresh")
        nodes.append(node)
        started = node.started_at
        meter = CpuMeter(ctx.pids(worker=node.pid)).start()
        registered = taken = covered = caught_up = None
        deadline = Deadline(ctx.sizes.apply_limit_s)
        while not deadline.passed() and (covered is None or caught_up is None):
            node._check_alive()
            now = time.monotonic()
            record = node.member(client)
            if record is not None:
                registered = registered or now
                report = record["partitions"]
                if len(report) >= settings.partitions:
                    taken = taken or now
                    if all(r["applied"] >= tail[p] and r["applied"] == r["flushed"]
                           for p, r in report.items()):
                        caught_up = caught_up or now
            if covered is None and flushed_count(
                    watermarks(client, settings, producer.producer_id), wanted) >= sum(wanted):
                covered = now
            time.sleep(0.02)
        ctx.results.cpu["cluster recovery"] = meter.stop()
        done = max(covered, caught_up) if covered and caught_up else None
        out.update(
            registered_s=_r(registered and registered - started),
            all_taken_s=_r(taken and taken - started),
            redis_covered_s=_r(covered and covered - started),
            report_caught_up_s=_r(caught_up and caught_up - started),
            recovery_s=_r(done and done - started),
            peak_rss_mib=round(node.memory().get("VmHWM", 0) / 1024, 1),
        )
        out.update(_took_lines(node.log_path))
        say(f"cluster: recovery: fresh worker registered {_fmt_s(out['registered_s'])}, took "
            f"all {settings.partitions} partitions {_fmt_s(out['all_taken_s'])}, Redis covered "
            f"{_fmt_s(out['redis_covered_s'])}, report caught up "
            f"{_fmt_s(out['report_caught_up_s'])} after start; loads per the log: "
            f"{out.get('took_sum_s')}s in all, longest {out.get('took_max_s')}s")
        node.stop()
        out["fresh_exit"] = node.exit_code
    finally:
        producer.close()
        stop_all(nodes)
        client.close()
        cleanup(settings)
    return out


def _took_lines(log_path: Path) -> dict[str, Any]:
    """The worker's "took partition … in …s" lines: per-partition load times and span."""
    rows = []
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        m = TOOK_RE.match(line)
        if m:
            at = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            rows.append({"at": at, "partition": int(m.group(2)), "role": m.group(3),
                         "keys": int(m.group(5)), "offset": int(m.group(6)),
                         "s": float(m.group(7))})
    if not rows:
        return {"took_lines": 0}
    span = rows[-1]["at"] - (rows[0]["at"] - rows[0]["s"])
    return {"took_lines": len(rows), "took_sum_s": round(sum(r["s"] for r in rows), 2),
            "took_max_s": round(max(r["s"] for r in rows), 3),
            "took_median_s": round(statistics.median(r["s"] for r in rows), 3),
            "took_span_s": round(span, 2),
            "took_keys": sum(r["keys"] for r in rows),
            "took": [{k: v for k, v in r.items() if k != "at"} for r in rows]}


def _keys_in_redis(client: redis.Redis, settings: Settings) -> int:
    keys = Keys(settings.cluster)
    pipe = client.pipeline(transaction=False)
    for p in range(settings.partitions):
        pipe.hlen(keys.data(p))
    return sum(int(n) for n in pipe.execute())


# -- 3. R=1 vs R=2 ---------------------------------------------------------------
@dataclass
class _Cluster:
    replicas: int
    settings: Settings
    client: redis.Redis
    producer: Producer
    nodes: list[Node] = field(default_factory=list)
    slices: list[dict[str, Any]] = field(default_factory=list)


def _slice(ctx: Context, cl: _Cluster, seconds: float, idle: list[Node]) -> dict[str, Any]:
    """The producer flat out for ``seconds``, then until Redis covers every write.
    ``idle``: the other cluster's workers (their CPU is reported apart from others')."""
    ops = ctx.ops(min(ctx.sizes.writes, 500_000))
    tracker = Tracker(cl.settings.partitions)
    meter = CpuMeter(ctx.pids(**{f"worker{i}": n.pid for i, n in enumerate(cl.nodes)},
                              **{f"idle{i}": n.pid for i, n in enumerate(idle)}))
    meter.start()
    began = time.monotonic()
    until = began + seconds
    submit, add = cl.producer.submit, tracker.add
    n_ops, i = len(ops), (len(cl.slices) * 7919) % len(ops)
    while time.monotonic() < until:
        for _ in range(1000):
            op, key, value = ops[i]
            i = i + 1 if i + 1 < n_ops else 0
            add(submit(op, key, value))
        tracker.poll()
    ended = time.monotonic()
    confirmed_all = tracker.wait_all(Deadline(ctx.sizes.confirm_limit_s))
    confirmed_at = time.monotonic()
    # Seqs run on across slices: Redis covers this slice when it covers its last seqs.
    wanted = [max(s, 0) for s in tracker.submitted_seq]
    covered_at = _wait_covered(cl.client, cl.settings, cl.producer.producer_id, wanted,
                               ctx.sizes.drain_limit_s, cl.nodes[0])
    cpu = meter.stop()
    cpu["worker"] = round(sum(cpu.pop(f"worker{i}", 0.0) for i in range(len(cl.nodes))), 2)
    cpu["idle cluster"] = round(sum(cpu.pop(f"idle{i}", 0.0) for i in range(len(idle))), 2)
    writes = tracker.submitted
    row = {"writes": writes, "produce_s": round(ended - began, 3),
           "confirm_s": round(confirmed_at - began, 3),
           "flush_s": _r(covered_at and covered_at - began), "failed": tracker.failed,
           "confirmed_all": confirmed_all, "cpu": cpu,
           "flushed_per_s": round(rate(writes, covered_at - began)) if covered_at else None}
    cl.slices.append(row)
    say(f"cluster: R={cl.replicas} slice {len(cl.slices)}: {writes:,} writes, applied + "
        f"flushed {fmt_rate(row['flushed_per_s'] or 0)}; others {cpu.get('others', 0):.2f} "
        "cores")
    return row


def _summary(ctx: Context, cl: _Cluster) -> dict[str, Any]:
    done = [r for r in cl.slices if r["flush_s"] is not None]
    writes = sum(r["writes"] for r in cl.slices)
    wall = sum(r["cpu"]["wall_s"] for r in cl.slices)
    cpu: dict[str, Any] = {"wall_s": round(wall, 2)}
    for name in {k for r in cl.slices for k in r["cpu"] if k != "wall_s"}:
        cpu[name] = round(sum(r["cpu"].get(name, 0.0) * r["cpu"]["wall_s"]
                              for r in cl.slices) / max(wall, 1e-9), 2)
    ctx.results.cpu[f"cluster R={cl.replicas}"] = cpu
    complete = len(done) == len(cl.slices)
    return {
        "replicas": cl.replicas, "workers": len(cl.nodes), "slices": cl.slices,
        "duration_s": round(sum(r["produce_s"] for r in cl.slices), 1),
        "writes": writes, "complete": complete,
        "failed": sum(r["failed"] for r in cl.slices),
        "produced_per_s": round(rate(writes, sum(r["produce_s"] for r in cl.slices))),
        "confirmed_per_s": round(rate(writes, sum(r["confirm_s"] for r in cl.slices))),
        "flushed_per_s": round(rate(writes, sum(r["flush_s"] for r in done)))
        if complete else None,
        "drain_s_max": max((r["flush_s"] - r["produce_s"] for r in done), default=None),
    }


def _replication(ctx: Context) -> dict[str, Any]:
    """3 workers at R=1 and 3 at R=2, both clusters up; the producer's flat-out slices
    alternate between them (R=1, R=2, then R=2, R=1, …) so that both see the same
    machine, which others share."""
    duration = ctx.sizes.cluster_duration_s
    rounds = max(1, round(duration / 10))
    per_slice = duration / rounds
    clusters: list[_Cluster] = []
    try:
        for replicas in (1, 2):
            settings = ctx.settings(f"cl-r{replicas}").replace(replicas=replicas)
            cl = _Cluster(replicas, settings, redis_client(settings), Producer(settings))
            clusters.append(cl)
            cl.nodes = [Node(settings, ctx.log_dir, f"n{i}") for i in range(WORKERS)]
        for cl in clusters:
            wait_settled(cl.client, cl.settings, cl.nodes)
            cl.producer.submit("set", "warmup", 0).result(30)
        say(f"cluster: R=1 and R=2, {WORKERS} workers each, settled; {rounds} round(s) of "
            f"{per_slice:.0f}s flat out per R")
        for rnd in range(rounds):
            for cl in (clusters if rnd % 2 == 0 else clusters[::-1]):
                _slice(ctx, cl, per_slice, [n for c in clusters if c is not cl for n in c.nodes])
        out = {f"r{cl.replicas}": _summary(ctx, cl) for cl in clusters}
        for cl in clusters:
            r = out[f"r{cl.replicas}"]
            say(f"cluster: R={cl.replicas}: produced {fmt_rate(r['produced_per_s'])}, applied "
                f"+ flushed {fmt_rate(r['flushed_per_s'] or 0)}")
        return out
    finally:
        for cl in clusters:
            cl.producer.close()
            stop_all(cl.nodes)
            cl.client.close()
            cleanup(cl.settings)


# -- the scenario --------------------------------------------------------------
def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def run_cluster(ctx: Context) -> None:
    parts: dict[str, Any] = {}
    for name, part in (("failover", _failover), ("recovery", _recovery),
                       ("replication", _replication)):
        busy = ctx.quiet(f"cluster {name}")
        say(f"cluster: --- {name} ---" + ("" if busy is None else
                                          f" (other processes: {busy:.2f} cores)"))
        try:
            if name == "replication":
                parts.update(part(ctx))
            else:
                parts[name] = part(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            say(f"cluster: {name} failed: {exc!r}")
            ctx.results.errors[f"cluster {name}"] = repr(exc)
    ctx.detail("cluster", **parts)
    figures(ctx, parts)
