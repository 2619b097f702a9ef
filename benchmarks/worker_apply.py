"""Scenario c: one worker applies (and flushes) a backlog produced while no worker ran."""

from __future__ import annotations

import time

from benchmarks.cluster import (
    Tracker,
    WorkerProcess,
    cleanup,
    dead_letters,
    flushed_count,
    redis_client,
    slowlog_reset,
    slowlog_summary,
    watermarks,
)
from benchmarks.context import Context
from benchmarks.env import CpuMeter
from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from benchmarks.workload import backlog_ops, distinct_keys
from liftline.producer import Producer
from liftline.store.keys import Keys

APPLY_TARGET = 100_000


def run_worker_apply(ctx: Context) -> None:
    sizes = ctx.sizes
    settings = ctx.settings("worker")
    client = redis_client(settings)
    worker: WorkerProcess | None = None
    out: dict[str, object] = {"cluster": settings.cluster, "writes": sizes.backlog,
                              "distinct_keys": distinct_keys(sizes.backlog, sizes.keyspace)}
    try:
        # 1. The backlog, with no worker running.
        say(f"worker: producing a backlog of {sizes.backlog:,} writes over "
            f"{out['distinct_keys']:,} distinct keys (60% set, 35% incr, 5% merge)")
        producer = Producer(settings)
        tracker = Tracker(settings.partitions)
        try:
            deadline = Deadline(sizes.submit_limit_s * 2)
            ticker = Ticker(2.0)
            submit = producer.submit
            add = tracker.add
            began = time.perf_counter()
            for i, (op, key, value) in enumerate(backlog_ops(sizes.backlog,
                                                             keyspace=sizes.keyspace)):
                add(submit(op, key, value))
                if i % 10_000 == 0:
                    tracker.poll()
                    if deadline.passed():
                        say(f"  backlog: time limit hit after {tracker.submitted:,} writes")
                        break
                    if ticker.due():
                        say(f"  backlog: {tracker.submitted:,} submitted, "
                            f"{tracker.confirmed:,} confirmed")
            if not tracker.wait_all(Deadline(sizes.confirm_limit_s)):
                raise RuntimeError("backlog: confirms did not arrive in time")
            seconds = time.perf_counter() - began
        finally:
            producer.close()
        if tracker.failed:
            raise RuntimeError(f"backlog: {tracker.failed} writes failed: {tracker.first_error}")
        total = tracker.confirmed
        wanted = list(tracker.submitted_seq)
        out.update(backlog_confirmed=total, backlog_seconds=round(seconds, 2),
                   backlog_confirmed_per_s=round(rate(total, seconds)))
        say(f"worker: backlog of {total:,} confirmed in {seconds:.1f}s "
            f"({fmt_rate(rate(total, seconds))})")
        ctx.results.add("worker", "backlog_produce", "producing the backlog: confirmed writes/s "
                        "(1 thread, ~1M distinct keys)", out["backlog_confirmed_per_s"],
                        "writes/s", compare_to_redis=True)

        # 2. One worker applies and flushes it.
        say("worker: starting one `liftline worker`")
        if not ctx.servers.external:
            slowlog_reset(client)
        worker = WorkerProcess(settings, ctx.log_dir)
        meter = CpuMeter(ctx.pids())
        registered = worker.wait_registered(client)
        rss_at_start_mib = worker.memory().get("VmRSS", 0) / 1024
        meter.add("worker", worker.pid)
        meter.start()
        say(f"worker: pid {worker.pid} registered; waiting for watermarks to cover "
            f"{total:,} writes")
        deadline = Deadline(sizes.apply_limit_s)
        ticker = Ticker(2.0)
        covered = 0
        finished = None
        timeline: list[tuple[float, int]] = []
        # The worker beats every heartbeat_s; its record expires after member_ttl_s.
        beat_gap, record_missing, next_beat_check = 0.0, 0, 0.0
        with ctx.profiled(worker.pid, "worker-apply"):
            while not deadline.passed():
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
                marks = watermarks(client, settings, producer.producer_id)
                covered = flushed_count(marks, wanted)
                if not timeline or timeline[-1][1] != covered:
                    timeline.append((round(time.monotonic() - registered, 2), covered))
                if covered >= total:
                    finished = time.monotonic()
                    break
                if time.monotonic() >= next_beat_check:
                    next_beat_check = time.monotonic() + 0.25
                    member = worker.member(client)
                    if member is None:
                        record_missing += 1
                    else:
                        beat_gap = max(beat_gap, member["heartbeat_age_s"])
                if ticker.due():
                    mem = worker.memory()
                    say(f"  {covered:,}/{total:,} flushed "
                        f"({fmt_rate(rate(covered, time.monotonic() - registered))}), "
                        f"worker RSS {mem.get('VmRSS', 0) / 1024:.0f} MiB")
                time.sleep(0.05)
        ctx.results.cpu["worker apply"] = meter.stop()
        out["flush_timeline"] = timeline
        out["longest_heartbeat_age_s"] = round(beat_gap, 2)
        out["member_record_missing_polls"] = record_missing
        first = next((t for t, n in timeline if n > 0), None)
        out["first_flush_s"] = first
        if not ctx.servers.external:
            out["redis_slowlog"] = slowlog_summary(client)
        elapsed = (finished or time.monotonic()) - registered
        per_s = round(rate(covered, elapsed))
        time.sleep(settings.heartbeat_s + 0.3)  # one more heartbeat: a fresh report
        mem = worker.memory()
        record = worker.member(client) or {"partitions": {}}
        report = record["partitions"]
        batches = sum(int(r["applied"]) + 1 for r in report.values())
        keys_in_memory = sum(int(r["keys"]) for r in report.values())
        keys_in_redis = _keys_in_redis(client, settings.cluster, settings.partitions)
        hwm_mib = mem.get("VmHWM", 0) / 1024
        mkeys = max(keys_in_memory, 1) / 1e6
        out.update(
            complete=finished is not None, flushed=covered, apply_seconds=round(elapsed, 2),
            applied_per_s=per_s, batches=batches,
            writes_per_batch=round(total / batches, 1) if batches else None,
            keys_in_memory=keys_in_memory, keys_in_redis=keys_in_redis,
            peak_rss_mib=round(hwm_mib, 1), rss_mib=round(mem.get("VmRSS", 0) / 1024, 1),
            peak_rss_mib_per_million_keys=round(hwm_mib / mkeys, 1),
            rss_at_registration_mib=round(rss_at_start_mib, 1),
            rss_growth_mib_per_million_keys=round((hwm_mib - rss_at_start_mib) / mkeys, 1),
        )
        say(f"worker: {covered:,} writes applied and flushed in {elapsed:.2f}s = "
            f"{fmt_rate(per_s)}; peak RSS {hwm_mib:.0f} MiB for {keys_in_memory:,} keys "
            f"({batches:,} batches, {keys_in_redis:,} keys in Redis)")
        note = "" if finished is not None else f"stopped by its {sizes.apply_limit_s:.0f}s limit"
        fig = ctx.results.add("worker", "apply", "applied + flushed writes/s from backlog "
                              "(registration → watermarks cover all)", per_s, "writes/s",
                              target=APPLY_TARGET, compare_to_redis=True, note=note)
        if finished is None:
            fig.passed = False
        ctx.results.add("worker", "apply_seconds", "time to apply + flush the backlog",
                        round(elapsed, 2), "s")
        ctx.results.add("worker", "first_flush", "time to the first flushed write "
                        "(registration → first watermark in Redis)", first, "s")
        ctx.results.add("worker", "heartbeat_gap", "oldest heartbeat seen while applying "
                        f"(member record expires after {settings.member_ttl_s:.0f} s)",
                        round(beat_gap, 2), "s",
                        note=f"record missing in {record_missing} polls" if record_missing
                        else "")
        slow = out.get("redis_slowlog", {})
        if slow.get("count"):
            top = slow["longest"][0]
            ctx.results.add("worker", "slowest_redis", "slowest Redis command while applying "
                            f"(slowlog: {slow['count']} commands over "
                            f"{slow['threshold_ms']:.0f} ms)", top["ms"], "ms",
                            note=f"{top['command']} with {top['args']:,} arguments")
        ctx.results.add("worker", "peak_rss", "worker peak RSS (VmHWM)", round(hwm_mib, 1),
                        "MiB", note=f"{keys_in_memory:,} keys held")
        ctx.results.add("worker", "rss_per_mkeys", "worker peak RSS per million keys",
                        round(hwm_mib / mkeys, 1), "MiB/M keys")
        ctx.results.add("worker", "rss_growth_per_mkeys", "worker peak RSS growth per million "
                        "keys (peak − RSS at registration)",
                        round((hwm_mib - rss_at_start_mib) / mkeys, 1), "MiB/M keys",
                        note=f"{rss_at_start_mib:.0f} MiB at registration")
        ctx.results.add("worker", "batch_size", "writes per stream message (producer batching)",
                        round(total / batches, 1) if batches else None, "writes")
        if batches:
            ctx.results.notes.append(
                f"worker scenario: the backlog came in {batches:,} stream messages of "
                f"{total / batches:,.0f} writes on average. The producer's batches grow with "
                "its speed (linger 5 ms), and the worker's rate tends to grow with the batch "
                "size, so the apply figure also moves with how fast the backlog was produced.")
        dead = dead_letters(client, settings)
        out["dead_letters"] = dead
        if dead:
            ctx.results.notes.append(f"worker scenario: {dead:,} dead letters")
        if keys_in_redis != out["distinct_keys"]:
            ctx.results.notes.append(
                f"worker scenario: Redis holds {keys_in_redis:,} keys, expected "
                f"{out['distinct_keys']:,}")

        # 3. Graceful stop.
        stop_s = worker.stop()
        out.update(stop_seconds=round(stop_s, 2), exit_code=worker.exit_code)
        say(f"worker: SIGTERM → exit {worker.exit_code} in {stop_s:.2f}s")
        if worker.exit_code != 0:
            ctx.results.notes.append(
                f"worker scenario: worker exited {worker.exit_code} after SIGTERM")
    finally:
        ctx.detail("worker", **out)
        if worker is not None:
            worker.stop()
        client.close()
        cleanup(settings)


def _keys_in_redis(client, cluster: str, partitions: int) -> int:  # type: ignore[no-untyped-def]
    keys = Keys(cluster)
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.hlen(keys.data(p))
    return sum(int(n) for n in pipe.execute())
