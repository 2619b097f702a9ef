"""Scenario b: the producer mix written straight to Redis (scenario a is producer_bench)."""

from __future__ import annotations

import time
import zlib

import msgpack

from benchmarks.cluster import PARTITIONS, redis_client
from benchmarks.context import Context
from benchmarks.env import CpuMeter
from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from benchmarks.report import BASELINE_ID


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
