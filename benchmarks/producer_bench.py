"""Scenario a: the Producer — 1, 4 and 16 threads sharing one, submit_many, 4 processes.

Every case writes the same ops (the producer mix) as fast as it can and awaits every
confirm; the figure is confirmed writes/s from the first submit to the last confirm.
The ratios of the threaded and multi-process cases to the 1-thread case are figures
of their own, measured in the same run (the machine may be shared: the ratio is what
one run can tell).
"""

from __future__ import annotations

import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import IO, Any

from benchmarks.cluster import cleanup
from benchmarks.context import Context
from benchmarks.env import REPO, CpuMeter
from benchmarks.producer_load import Load, run_load
from benchmarks.progress import Deadline, fmt_rate, rate, say
from benchmarks.workload import Op
from liftline.cluster import bootstrap
from liftline.producer import Producer

PRODUCER_TARGET = 50_000
THREADS = (1, 4, 16)
PROCESSES = 4
ROUNDS = 3
# Goal: threads sharing a Producer lose nothing against one thread; processes add cores.
THREAD_RATIO_TARGET = 1.0
PROCESS_RATIO_TARGET = 2.0


def run_producer(ctx: Context) -> None:
    ops = ctx.ops(ctx.sizes.writes)
    # The thread cases run interleaved, ROUNDS times, and each figure is the round with
    # the median rate: one 500,000-write case lasts a second or two, and what else the
    # machine does (and the collector, below) moves one such run by more than the
    # differences the ratios are to show.
    outs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(ROUNDS):
        for threads in THREADS:
            key = f"{threads}t"
            outs.setdefault(key, []).append(_threads_measured(ctx, ops, threads, many=False,
                                                              round_=round_))
    rates = {key: _threads_case(ctx, key, runs, many=False) for key, runs in outs.items()}
    rates["many"] = _threads_case(
        ctx, "many", [_threads_measured(ctx, ops, 1, many=True, round_=0)], many=True)
    rates[f"{PROCESSES}p"] = _processes_case(ctx, PROCESSES)
    one = rates["1t"]
    for key, label, target in (
            ("4t", "4 threads / 1 thread, confirmed writes/s", THREAD_RATIO_TARGET),
            ("16t", "16 threads / 1 thread, confirmed writes/s", THREAD_RATIO_TARGET),
            (f"{PROCESSES}p", f"{PROCESSES} processes / 1 thread, confirmed writes/s",
             PROCESS_RATIO_TARGET),
            ("many", "submit_many / submit, 1 thread, confirmed writes/s", None)):
        value = round(rates[key] / one, 2) if one and rates.get(key) else None
        ctx.results.add("producer", f"ratio_{key}", label, value, "ratio", target=target)
    for key in ("4t", "16t"):  # the spread behind the medians
        per_round = [round(a["confirmed_per_s"] / b["confirmed_per_s"], 2)
                     for a, b in zip(outs[key], outs["1t"], strict=True) if b["confirmed_per_s"]]
        ctx.results.notes.append(f"producer: {key} / 1t per round: "
                                 f"{', '.join(f'{r:.2f}x' for r in per_round)}")


def _label(threads: int, many: bool) -> str:
    how = "submit_many (1,000 a call)" if many else "submit"
    return f"{threads} thread{'s' if threads > 1 else ''}, {how}"


def _threads_measured(ctx: Context, ops: list[Op], threads: int, *, many: bool,
                      round_: int) -> dict[str, Any]:
    key = "many" if many else f"{threads}t"
    name = f"producer.{key}"
    say(f"{name}: {len(ops):,} mixed writes, {_label(threads, many)}, one Producer"
        + (f" (round {round_ + 1} of {ROUNDS})" if not many else ""))
    out = _threads_run(ctx, ops, threads, many, round_)
    _told(name, out)
    return out


def _threads_case(ctx: Context, key: str, runs: list[dict[str, Any]], *, many: bool) -> float:
    """Record the case's figures from the run with the median rate; its confirmed writes/s."""
    threads = runs[0]["threads"]
    out = sorted(runs, key=lambda o: o["confirmed_per_s"])[len(runs) // 2]
    ctx.detail(f"producer.{key}", **out, rounds=[o["confirmed_per_s"] for o in runs])
    ok = all(o["complete"] and not o["failed"] for o in runs)
    note = "" if all(o["complete"] for o in runs) else "stopped by its time limit"
    if len(runs) > 1:
        note = (note + "; " if note else "") + f"median of {len(runs)} rounds"
    extra = {"target": PRODUCER_TARGET} if key == "1t" else {}
    fig = ctx.results.add("producer", key, f"confirmed writes/s, {_label(threads, many)}",
                          out["confirmed_per_s"], "writes/s", compare_to_redis=True,
                          note=note, **extra)
    if not ok:
        fig.passed = False
    ctx.results.add("producer", f"{key}_submit", f"submit calls/s, {_label(threads, many)} "
                    "(writes handed over, before confirms)", out["submitted_per_s"], "writes/s")
    ctx.results.add("producer", f"{key}_cpu", f"producer process CPU per write, "
                    f"{_label(threads, many)}", out["cpu_us_per_write"], "µs")
    return float(out["confirmed_per_s"]) if ok else 0.0


def _told(name: str, out: dict[str, Any]) -> float:
    """Say a case's outcome; its confirmed writes/s, or 0 if it failed or ran out of time."""
    say(f"{name}: {out['confirmed']:,} confirmed in {out['seconds']:.2f}s = "
        f"{fmt_rate(out['confirmed_per_s'])} ({out['cpu_us_per_write']} µs CPU a write, "
        f"{out['writes_per_message']} writes a message, {out['failed']} failed)")
    return float(out["confirmed_per_s"]) if out["complete"] and not out["failed"] else 0.0

def _threads_run(ctx: Context, ops: list[Op], threads: int, many: bool,
                 round_: int) -> dict[str, Any]:
    settings = ctx.settings(f"prod{'m' if many else ''}{threads}t")
    producer = Producer(settings)
    try:
        producer.write("set", "warmup", 0, timeout=30)  # connected and confirming
        # Each thread takes a contiguous block of the ops, as one thread takes them all:
        # every case then reads its input in order. Dealt round-robin (ops[i::threads]),
        # each of 16 threads read every 16th op, scattered over the list's memory, and
        # paid for that in cache misses the 1-thread case did not (0.84x against about
        # 1.0x with blocks, same code, same session: README, Benchmarks).
        n = len(ops)
        slices = [ops[i * n // threads:(i + 1) * n // threads] for i in range(threads)]
        loads: list[Load | None] = [None] * threads
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads + 1)

        def work(n: int) -> None:
            try:
                barrier.wait()
                loads[n] = run_load(producer, slices[n], many=many,
                                    submit_limit_s=ctx.sizes.submit_limit_s,
                                    confirm_limit_s=ctx.sizes.confirm_limit_s,
                                    progress=n == 0, scale=threads)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                barrier.abort()

        workers = [threading.Thread(target=work, args=(n,), name=f"bench-producer-{n}")
                   for n in range(threads)]
        for w in workers:
            w.start()
        published = producer.publisher.published
        meter = CpuMeter(ctx.pids()).start()
        cpu0 = time.process_time()
        # Every case starts from a collected heap. The collector's full passes come as the
        # heap grows by a quarter over what the last one left; without this, a case that
        # followed one whose futures were alive at its last pass skipped most of them
        # (4 full passes against 7 in one million-write experiment, a third of the time).
        gc.collect()
        with ctx.profiled(os.getpid(), f"producer-{'many' if many else threads}"
                          f"{'' if many else 't'}"):
            barrier.wait()
            for w in workers:
                w.join()
        cpu = time.process_time() - cpu0
        ctx.results.cpu[f"producer {'submit_many' if many else f'{threads}t'}"
                        f"{f' r{round_ + 1}' if round_ else ''}"] = meter.stop()
        if errors:
            raise errors[0]
        done = [load for load in loads if load is not None]
        return _summary(done, len(ops), cpu, producer.publisher.published - published,
                        cluster=settings.cluster, threads=threads, many=many)
    finally:
        producer.close()
        cleanup(settings)


def _summary(loads: list[Load], writes: int, cpu_s: float, messages: int,
             **extra: Any) -> dict[str, Any]:
    began = min(load.began for load in loads)
    ended = max(load.confirm_end for load in loads)
    submit_end = max(load.submit_end for load in loads)
    submitted = sum(load.submitted for load in loads)
    confirmed = sum(load.confirmed for load in loads)
    return {
        **extra,
        "writes": writes, "submitted": submitted, "confirmed": confirmed,
        "failed": sum(load.failed for load in loads),
        "first_error": next((load.first_error for load in loads if load.first_error), ""),
        "complete": all(load.complete for load in loads) and submitted == writes,
        "seconds": round(ended - began, 3),
        "submit_seconds": round(submit_end - began, 3),
        "confirmed_per_s": round(rate(confirmed, ended - began)),
        "submitted_per_s": round(rate(submitted, submit_end - began)),
        "cpu_s": round(cpu_s, 3),
        "cpu_us_per_write": round(cpu_s / max(confirmed, 1) * 1e6, 2),
        "messages": messages,
        "writes_per_message": round(submitted / messages, 1) if messages else None,
    }


# -- several processes, one Producer each ------------------------------------------------
def _processes_case(ctx: Context, processes: int) -> float:
    name = f"producer.{processes}p"
    writes = ctx.sizes.writes
    say(f"{name}: {writes:,} mixed writes over {processes} processes, one Producer each")
    out = _processes_run(ctx, processes)
    ctx.detail(name, **out)
    note = "" if out["complete"] else "stopped by its time limit"
    fig = ctx.results.add("producer", f"{processes}p", f"confirmed writes/s, {processes} "
                          "processes, one Producer each, submit", out["confirmed_per_s"],
                          "writes/s", compare_to_redis=True, note=note)
    if out["failed"] or not out["complete"]:
        fig.passed = False
    ctx.results.add("producer", f"{processes}p_cpu", f"producer processes' CPU per write, "
                    f"{processes} processes", out["cpu_us_per_write"], "µs")
    return _told(name, out)


class _Child:
    """One ``python -m benchmarks.producer_child``; its stdout lines read by a thread."""

    def __init__(self, argv: list[str], log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode())
        self.lines.put("")

    def next(self, deadline: Deadline) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=max(deadline.left(), 0.01))
        except queue.Empty:
            raise RuntimeError(f"producer child {self.proc.pid} said nothing in time") from None
        if not line:
            raise RuntimeError(f"producer child {self.proc.pid} exited "
                               f"({self.proc.wait(5)}) before it answered")
        return dict(json.loads(line))

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def end(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its Popen
                self.proc.wait(10)


def _processes_run(ctx: Context, processes: int) -> dict[str, Any]:
    settings = ctx.settings(f"prod{processes}p")
    bootstrap.prepare(settings, name="bench-producer-setup")
    children: list[_Child] = []
    log_path = ctx.log_dir / f"producer-children-{settings.cluster}.log"
    try:
        with open(log_path, "ab") as log:
            for index in range(processes):
                children.append(_Child([
                    sys.executable, "-m", "benchmarks.producer_child",
                    "--amqp-url", settings.amqp_url, "--redis-url", settings.redis_url,
                    "--cluster", settings.cluster, "--writes", str(ctx.sizes.writes),
                    "--index", str(index), "--of", str(processes),
                    "--submit-limit", str(ctx.sizes.submit_limit_s),
                    "--confirm-limit", str(ctx.sizes.confirm_limit_s)], log))
        ready = Deadline(120)
        for child in children:
            child.next(ready)  # {"ready": pid}
        meter = CpuMeter(ctx.pids(**{f"producer{n}": c.proc.pid
                                     for n, c in enumerate(children)})).start()
        for child in children:
            child.go()
        finished = Deadline(ctx.sizes.submit_limit_s + ctx.sizes.confirm_limit_s + 30)
        answers = [child.next(finished) for child in children]
        row = meter.stop()
        # The children are this case's benchmark processes: one column for them all.
        row["bench"] = round(sum(row.pop(f"producer{n}", 0.0) for n in range(processes)), 2)
        ctx.results.cpu[f"producer {processes}p"] = row
        loads = [Load(**{k: v for k, v in a.items() if k in Load.__dataclass_fields__})
                 for a in answers]
        return _summary(loads, ctx.sizes.writes, sum(a["cpu_s"] for a in answers),
                        sum(a["messages"] for a in answers), cluster=settings.cluster,
                        processes=processes, log=str(log_path))
    finally:
        for child in children:
            if child.proc.stdin is not None:
                child.proc.stdin.close()
        for child in children:
            child.end()
        cleanup(settings)
