"""Scenario d: producer → RabbitMQ → worker → Redis, sustained, paced and unpaced."""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.cluster import (
    Tracker,
    WorkerProcess,
    cleanup,
    dead_letters,
    redis_client,
    slowlog_reset,
    slowlog_summary,
    watermarks,
)
from benchmarks.context import Context
from benchmarks.env import CpuMeter
from benchmarks.progress import Deadline, fmt_rate, rate, say
from liftline.producer import Producer
from liftline.settings import Settings

KEPT_UP_DRAIN_S = 5.0
PACED_SHARE = 0.98  # the paced run passes when it confirms >= 98% of the offered rate


class Sampler(threading.Thread):
    """Once a second: produced, confirmed, flushed (Redis watermarks), lag, worker RSS."""

    def __init__(self, settings: Settings, tracker: Tracker, worker: WorkerProcess,
                 producer_id: str, began: float) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.settings = settings
        self.tracker = tracker
        self.worker = worker
        self.producer_id = producer_id
        self.began = began
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()
        self.client = redis_client(settings)
        self._last = {"produced": 0, "confirmed": 0, "flushed": 0}
        self._last_t = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            tick = self.began + 1.0
            while not self.halt.wait(max(0.0, tick - time.monotonic())):
                self.sample()
                tick += 1.0
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.client.close()

    def sample(self) -> dict[str, Any]:
        tracker = self.tracker
        tracker.poll()
        marks = watermarks(self.client, self.settings, self.producer_id)
        confirmed_seq = list(tracker.confirmed_seq)
        lags = [max(0, c - m) for c, m in zip(confirmed_seq, marks, strict=True)]
        in_flight = sum(max(0, s - m)
                        for s, m in zip(tracker.submitted_seq, marks, strict=True))
        now = {"produced": tracker.submitted, "confirmed": tracker.confirmed,
               "flushed": sum(marks)}
        record = self.worker.member(self.client) or {"partitions": {}, "heartbeat_age_s": None}
        applied = sum(int(r["applied"]) + 1 for r in record["partitions"].values())
        t = time.monotonic() - self.began
        dt = max(t - self._last_t, 1e-3)
        self._last_t = t
        sample = {
            "t": round(t, 2),
            **now,
            "produced_per_s": round((now["produced"] - self._last["produced"]) / dt),
            "confirmed_per_s": round((now["confirmed"] - self._last["confirmed"]) / dt),
            "flushed_per_s": round((now["flushed"] - self._last["flushed"]) / dt),
            "lag": sum(lags),
            "in_flight": in_flight,
            "lag_max_partition": max(lags),
            "worker_applied_batches": applied,
            "heartbeat_age_s": record["heartbeat_age_s"],
            "worker_rss_mib": round(self.worker.memory().get("VmRSS", 0) / 1024, 1),
        }
        self._last = now
        self.samples.append(sample)
        say(f"  t={sample['t']:5.1f}s produced {sample['produced_per_s']:>7,}/s "
            f"confirmed {sample['confirmed_per_s']:>7,}/s flushed {sample['flushed_per_s']:>7,}/s "
            f"lag {sample['lag']:>8,} (max/partition {sample['lag_max_partition']:,}), "
            f"submitted−flushed {in_flight:,}")
        return sample


def run_e2e(ctx: Context) -> None:
    _run(ctx, "paced", ctx.sizes.paced_rate)
    _run(ctx, "unpaced", None)
    # The baseline hands Redis 1,000 writes a round trip; this run hands the Producer
    # 1,000 a call (submit_many), each still confirmed, applied and flushed. A fixed
    # count: flat out for the whole duration, the producer would outrun the worker by
    # millions of writes, and the figure would measure the drain time limit.
    _run(ctx, "unpaced-many", None, many=True)


def _run(ctx: Context, mode: str, offered: int | None, many: bool = False) -> None:
    sizes = ctx.sizes
    name = f"e2e.{mode}"
    settings = ctx.settings(f"e2e-{mode}")
    client = redis_client(settings)
    worker: WorkerProcess | None = None
    producer: Producer | None = None
    sampler: Sampler | None = None
    out: dict[str, Any] = {"cluster": settings.cluster, "duration_s": sizes.duration_s,
                           "offered_per_s": offered}
    try:
        producer = Producer(settings)  # creates the cluster and declares its streams
        worker = WorkerProcess(settings, ctx.log_dir)
        worker.wait_registered(client)
        worker.wait_serving(client)
        tracker = Tracker(settings.partitions)
        warm = producer.submit("set", "warmup", 0)
        tracker.add(warm)
        warm.result(30)
        what = f"{offered:,} writes/s offered" if offered else "as fast as possible"
        say(f"{name}: worker pid {worker.pid} serving; producing {what} for "
            f"{sizes.duration_s:.0f}s")
        ops = ctx.ops(min(ctx.sizes.writes, 500_000))
        if not ctx.servers.external:
            slowlog_reset(client)
        with ctx.profiled(worker.pid, f"worker-e2e-{mode}"):
            meter = CpuMeter(ctx.pids(worker=worker.pid)).start()
            began = time.monotonic()
            sampler = Sampler(settings, tracker, worker, producer.producer_id, began)
            sampler.start()
            if many:
                _produce_many(producer, tracker, ops, began + sizes.duration_s,
                              sizes.e2e_many_writes)
            else:
                _produce(producer, tracker, ops, offered, began, began + sizes.duration_s)
            ended = time.monotonic()
        tracker.poll()
        produced = tracker.submitted - 1
        confirmed_in_window = tracker.confirmed - 1
        lag_at_end = sampler.samples[-1]["lag"] if sampler.samples else None
        say(f"{name}: stopped producing after {produced:,} writes; waiting for confirms and "
            "for the worker to catch up")
        confirmed_all = tracker.wait_all(Deadline(sizes.confirm_limit_s))
        confirmed_at = time.monotonic()
        wanted = list(tracker.submitted_seq)
        drain_deadline = Deadline(sizes.drain_limit_s)
        covered_at = None
        while not drain_deadline.passed():
            marks = watermarks(client, settings, producer.producer_id)
            if all(m >= w for m, w in zip(marks, wanted, strict=True)):
                covered_at = time.monotonic()
                break
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            time.sleep(0.05)
        cpu = ctx.results.cpu[f"e2e {mode}"] = meter.stop()
        sampler.halt.set()
        sampler.join(5)
        if sampler.error is not None:
            raise sampler.error
        # Stream messages the worker applied (its report is at most one heartbeat old).
        time.sleep(settings.heartbeat_s + 0.3)
        record = worker.member(client) or {"partitions": {}}
        messages = sum(int(r["applied"]) + 1 for r in record["partitions"].values())
        out["stream_messages"] = messages
        out["writes_per_message"] = round(sum(tracker.submitted_seq) / messages, 1) \
            if messages else None
        if messages and "rabbitmq" in cpu:
            out["rabbitmq_cpu_ms_per_message"] = round(
                cpu["rabbitmq"] * cpu["wall_s"] / messages * 1000, 3)
        duration = ended - began
        drain_s = None if covered_at is None else max(0.0, covered_at - ended)
        total = sum(wanted)
        kept_up = drain_s is not None and drain_s <= KEPT_UP_DRAIN_S and tracker.failed == 0
        samples = sampler.samples
        out.update(
            produced=produced, produced_per_s=round(rate(produced, duration)),
            confirmed_in_window=confirmed_in_window,
            confirmed_in_window_per_s=round(rate(confirmed_in_window, duration)),
            # Every write produced in the window, confirmed: over start → last confirm.
            confirmed_per_s=round(rate(tracker.confirmed - 1, confirmed_at - began)),
            confirmed_all=confirmed_all, failed=tracker.failed, first_error=tracker.first_error,
            confirm_tail_s=round(confirmed_at - ended, 2),
            lag_at_end=lag_at_end,
            lag_max=max((s["lag"] for s in samples), default=None),
            drain_s=None if drain_s is None else round(drain_s, 2),
            flushed_per_s=round(rate(total, (covered_at or time.monotonic()) - began)),
            kept_up=kept_up, samples=samples,
            worker_peak_rss_mib=round(worker.memory().get("VmHWM", 0) / 1024, 1),
        )
        say(f"{name}: produced {fmt_rate(out['produced_per_s'])}, confirmed "
            f"{fmt_rate(out['confirmed_per_s'])}, lag at end {lag_at_end}, drained in "
            f"{'n/a' if drain_s is None else f'{drain_s:.2f}s'}; kept up: {kept_up}")
        if not ctx.servers.external:
            out["redis_slowlog"] = slowlog_summary(client)
        out["dead_letters"] = dead_letters(client, settings)
        if out["dead_letters"]:
            ctx.results.notes.append(f"{name}: {out['dead_letters']:,} dead letters")
        _figures(ctx, mode, offered, out)
    finally:
        ctx.detail(name, **out)
        if sampler is not None:
            sampler.halt.set()
        if producer is not None:
            producer.close()
        if worker is not None:
            stop_s = worker.stop()
            ctx.detail(name, worker_stop_s=round(stop_s, 2), worker_exit_code=worker.exit_code)
        client.close()
        cleanup(settings)


def _produce(producer: Producer, tracker: Tracker, ops: list[Any], offered: int | None,
             began: float, until: float) -> None:
    """Submit ops in steps of at most 1,000, at ``offered`` writes/s (None: flat out)."""
    submit, add = producer.submit, tracker.add
    n_ops = len(ops)
    i = 0
    done = 0
    while True:
        now = time.monotonic()
        if now >= until:
            return
        if offered is None:
            step = 1000
        else:
            step = min(int((now - began) * offered) - done, 1000)
            if step <= 0:
                time.sleep(0.001)
                continue
        for _ in range(step):
            op, key, value = ops[i]
            i += 1
            if i == n_ops:
                i = 0
            add(submit(op, key, value))
        done += step


def _produce_many(producer: Producer, tracker: Tracker, ops: list[Any], until: float,
                  writes: int) -> None:
    """Submit ``writes`` ops flat out with submit_many, 1,000 a call (or stop at ``until``)."""
    submit_many, add = producer.submit_many, tracker.add_many
    chunks = [ops[i:i + 1000] for i in range(0, len(ops), 1000)]
    n = done = 0
    while done < writes and time.monotonic() < until:
        futures = submit_many(chunks[n])
        add(futures)
        done += len(futures)
        n = (n + 1) % len(chunks)


def _figures(ctx: Context, mode: str, offered: int | None, out: dict[str, Any]) -> None:
    add = ctx.results.add
    scenario = f"e2e {mode}"
    if offered:
        add(scenario, "produced", f"submitted writes/s at {offered:,}/s offered",
            out["produced_per_s"], "writes/s")
        fig = add(scenario, "confirmed", f"confirmed writes/s at {offered:,}/s offered, "
                  f"{out['duration_s']:.0f}s (start → last confirm)", out["confirmed_per_s"],
                  "writes/s",
                  target=round(offered * PACED_SHARE), compare_to_redis=True)
        if out["failed"]:
            fig.passed = False
    else:
        how = (f", submit_many (1,000 a call), {out['produced']:,} writes"
               if mode.endswith("many") else f", {out['duration_s']:.0f}s")
        add(scenario, "produced", f"sustained submit rate, flat out{how}",
            out["produced_per_s"], "writes/s", compare_to_redis=True)
        add(scenario, "confirmed", "sustained confirmed writes/s (start → last confirm)",
            out["confirmed_per_s"], "writes/s", compare_to_redis=True)
    add(scenario, "flushed", "applied + flushed writes/s (start → Redis covers all)",
        out["flushed_per_s"], "writes/s", compare_to_redis=True)
    add(scenario, "batch_size", "writes per stream message (producer batching)",
        out.get("writes_per_message"), "writes")
    if out.get("rabbitmq_cpu_ms_per_message") is not None:
        add(scenario, "rabbitmq_cpu", "RabbitMQ CPU per stream message",
            out["rabbitmq_cpu_ms_per_message"], "ms")
    add(scenario, "lag_end", "worker lag when producing stopped (confirmed − flushed)",
        out["lag_at_end"], "writes")
    add(scenario, "lag_max", "worker lag, highest per-second sample", out["lag_max"], "writes")
    kept = add(scenario, "drain", "worker caught up (Redis covers every write) after "
               "producing stopped", out["drain_s"], "s",
               target=KEPT_UP_DRAIN_S if offered else None, target_kind="max",
               note="" if out["drain_s"] is not None
               else f"not within {ctx.sizes.drain_limit_s:.0f}s")
    if offered and out["drain_s"] is None:
        kept.passed = False
    if out["failed"]:
        ctx.results.notes.append(f"{scenario}: {out['failed']} writes failed: "
                                 f"{out['first_error']}")
