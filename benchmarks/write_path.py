"""Scenario a (the Producer, 1 and 4 threads) and b (the same ops straight to Redis)."""

from __future__ import annotations

import os
import threading
import time
import zlib

import msgpack

from benchmarks.cluster import PARTITIONS, cleanup, redis_client
from benchmarks.context import Context
from benchmarks.env import CpuMeter
from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from benchmarks.report import BASELINE_ID
from benchmarks.workload import Op
from liftline.producer import Producer, WriteFuture

CHUNK = 10_000
PRODUCER_TARGET = 50_000


def run_producer(ctx: Context) -> None:
    ops = ctx.ops(ctx.sizes.writes)
    for threads in (1, 4):
        name = f"producer.{threads}t"
        say(f"{name}: {len(ops):,} mixed writes, {threads} thread(s) sharing one Producer")
        out = _producer_run(ctx, ops, threads)
        ctx.detail(name, **out)
        label = f"confirmed writes/s, {threads} thread{'s' if threads > 1 else ''}"
        note = "" if out["complete"] else "stopped by its time limit"
        extra = {"target": PRODUCER_TARGET} if threads == 1 else {}
        fig = ctx.results.add("producer", f"{threads}t", label, out["confirmed_per_s"],
                              "writes/s", compare_to_redis=True, note=note, **extra)
        if out["failed"] or not out["complete"]:
            fig.passed = False if threads == 1 else None
        ctx.results.add("producer", f"{threads}t_submit", f"submit() calls/s, {threads} "
                        f"thread{'s' if threads > 1 else ''} (before confirms)",
                        out["submitted_per_s"], "writes/s")
        say(f"{name}: {out['confirmed']:,} confirmed in {out['seconds']:.2f}s = "
            f"{fmt_rate(out['confirmed_per_s'])} (submit phase {out['submit_seconds']:.2f}s, "
            f"{out['failed']} failed)")


def _producer_run(ctx: Context, ops: list[Op], threads: int) -> dict[str, object]:
    settings = ctx.settings(f"prod{threads}t")
    producer = Producer(settings)
    try:
        producer.write("set", "warmup", 0, timeout=30)  # connected and confirming
        slices = [ops[i::threads] for i in range(threads)]
        meter = CpuMeter(ctx.pids()).start()
        submit_deadline = Deadline(ctx.sizes.submit_limit_s)
        futures: list[list[WriteFuture]] = [[] for _ in range(threads)]
        submit_end = [0.0] * threads
        confirm_end = [0.0] * threads
        complete = [True] * threads
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads + 1)

        def work(n: int) -> None:
            try:
                barrier.wait()
                complete[n] = _submit(producer, slices[n], futures[n], submit_deadline,
                                      progress=n == 0, scale=threads)
                submit_end[n] = time.perf_counter()
                confirm_deadline = Deadline(ctx.sizes.confirm_limit_s)
                for future in futures[n]:
                    if not future.done():
                        future.exception(confirm_deadline.left())
                        if confirm_deadline.passed():
                            complete[n] = False
                            break
                confirm_end[n] = time.perf_counter()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                barrier.abort()

        workers = [threading.Thread(target=work, args=(n,), name=f"bench-producer-{n}")
                   for n in range(threads)]
        for w in workers:
            w.start()
        with ctx.profiled(os.getpid(), f"producer-{threads}t"):
            barrier.wait()
            began = time.perf_counter()
            for w in workers:
                w.join()
        ctx.results.cpu[f"producer {threads}t"] = meter.stop()
        if errors:
            raise errors[0]
        ended = max(confirm_end)
        submitted = sum(len(f) for f in futures)
        failed, first_error = 0, ""
        for chunk in futures:
            for future in chunk:
                error = future.exception(0) if future.done() else None
                if error is not None or not future.done():
                    failed += 1
                    first_error = first_error or repr(error)
        confirmed = submitted - failed
        return {
            "threads": threads,
            "writes": len(ops),
            "submitted": submitted,
            "confirmed": confirmed,
            "failed": failed,
            "first_error": first_error,
            "complete": all(complete) and submitted == len(ops),
            "seconds": round(ended - began, 3),
            "submit_seconds": round(max(submit_end) - began, 3),
            "confirmed_per_s": round(rate(confirmed, ended - began)),
            "submitted_per_s": round(rate(submitted, max(submit_end) - began)),
            "cluster": settings.cluster,
        }
    finally:
        producer.close()
        cleanup(settings)


def _submit(producer: Producer, ops: list[Op], out: list[WriteFuture], deadline: Deadline,
            *, progress: bool, scale: int) -> bool:
    """Submit ``ops`` as fast as possible; False if the deadline stopped it early."""
    submit = producer.submit
    append = out.append
    ticker = Ticker(2.0)
    began = time.perf_counter()
    for start in range(0, len(ops), CHUNK):
        for op, key, value in ops[start:start + CHUNK]:
            append(submit(op, key, value))
        if deadline.passed():
            say(f"  submit phase hit its {deadline.seconds:.0f}s limit after {len(out):,} writes")
            return False
        if progress and ticker.due():
            done = len(out) * scale
            say(f"  ~{done:,} submitted ({fmt_rate(rate(done, time.perf_counter() - began))})")
    return True


def run_baseline(ctx: Context) -> None:
    """The same ops written straight to Redis: HINCRBY / HSET in pipelines of 1,000."""
    ops = ctx.ops(ctx.sizes.writes)
    say(f"baseline: {len(ops):,} writes straight to Redis (pipelines of 1,000, "
        "transaction=False)")
    client = redis_client(ctx.settings("baseline"))
    prefix = f"bench:{{baseline-{ctx.run_id}}}:p"
    hashes = [f"{prefix}{p}" for p in range(PARTITIONS)]
    packb = msgpack.packb
    crc32 = zlib.crc32
    deadline = Deadline(ctx.sizes.submit_limit_s)
    ticker = Ticker(2.0)
    done = 0
    try:
        client.ping()
        meter = CpuMeter(ctx.pids()).start()
        began = time.perf_counter()
        for start in range(0, len(ops), 1000):
            pipe = client.pipeline(transaction=False)
            for op, key, value in ops[start:start + 1000]:
                h = hashes[crc32(key.encode()) % PARTITIONS]
                if op == "incr":
                    pipe.hincrby(h, key, value)
                else:
                    pipe.hset(h, key, packb(value, use_bin_type=True))
            done += len(pipe.execute())
            if deadline.passed():
                say(f"  baseline hit its {deadline.seconds:.0f}s limit after {done:,} writes")
                break
            if ticker.due():
                say(f"  {done:,} written ({fmt_rate(rate(done, time.perf_counter() - began))})")
        seconds = time.perf_counter() - began
        ctx.results.cpu["baseline"] = meter.stop()
        per_s = round(rate(done, seconds))
        ctx.detail("baseline", writes=done, seconds=round(seconds, 3), writes_per_s=per_s)
        note = "" if done == len(ops) else "stopped by its time limit"
        ctx.results.add("baseline", BASELINE_ID.split(".", 1)[1],
                        "direct Redis, redis-py pipelines of 1,000 (HINCRBY/HSET)", per_s,
                        "writes/s", note=note)
        say(f"baseline: {done:,} writes in {seconds:.2f}s = {fmt_rate(per_s)}")
    finally:
        try:
            client.unlink(*hashes)
        finally:
            client.close()
