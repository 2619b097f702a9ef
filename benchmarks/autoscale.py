"""``python -m benchmarks.autoscale [--writes N] [--runs autoscaled,fixed]``

A burst of writes against a pool that starts at one worker, twice: with the
autoscaler (``--max 4 --target 20000 --interval 0.5 --scale-down-after 3``) and
with a fixed single worker (the same autoscaler process at ``--max 1``, so both
runs are measured the same way). Records the backlog and the worker count over
time (the autoscaler's samples in Redis) and the time from the burst's start to
the backlog drained (every acknowledged write applied and flushed: Redis'
producer watermarks cover every ticket). Writes
benchmarks/results/autoscale.md (+ autoscale.png when matplotlib is installed:
``pip install -e '.[bench]'``).

Starts its own RabbitMQ and Redis (or uses LIFTLINE_BENCH_AMQP_URL and
LIFTLINE_BENCH_REDIS_URL). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from liftline import Producer, Settings
from liftline.autoscale import record
from liftline.cluster import bootstrap
from liftline.store.keys import Keys

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
PRODUCERS = 2  # one producer process alone does not outrun one worker on 2 cores


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def produce(settings: Settings, first: int, last: int) -> dict[tuple[int, str], int]:
    """Increments ``first..last-1`` as fast as one Producer goes; highest seq per
    (partition, producer) acknowledged. Runs in a child process."""
    top: dict[tuple[int, str], int] = {}
    with Producer(settings) as producer:
        submit = producer.submit
        futures = [submit("incr", f"skier:{i % 100_000}", 1) for i in range(first, last)]
        for future in futures:
            t = future.result(120)
            top[(t.partition, t.producer_id)] = max(top.get((t.partition, t.producer_id), 0),
                                                     t.seq)
    return top


def drained(client: redis.Redis, settings: Settings, wanted: dict[tuple[int, str], int]) -> bool:
    keys = Keys(settings.cluster)
    pipe = client.pipeline(transaction=False)
    for partition, producer in wanted:
        pipe.hget(keys.watermarks(partition), producer)
    got = pipe.execute()
    return all(g is not None and int(g) >= seq for g, seq in zip(got, wanted.values(),
                                                                  strict=True))


def one_run(name: str, base: Settings, client: redis.Redis, writes: int, max_workers: int,
            log_dir: Path, tag: str) -> dict[str, Any]:
    settings = base.replace(cluster=f"bench{secrets.token_hex(3)}", autoscale_max=max_workers)
    bootstrap.prepare(settings)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{tag}.log"
    with open(log_path, "wb") as out:
        scaler = subprocess.Popen(
            [sys.executable, "-m", "liftline", "autoscale", "-v", "--log-dir",
             str(log_dir / f"{tag}-workers")], env=settings.child_env(), cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT)
    keys = Keys(settings.cluster)
    try:
        deadline = time.monotonic() + 60
        while client.scard(keys.members) < 1:
            if time.monotonic() > deadline or scaler.poll() is not None:
                raise RuntimeError(f"{name}: no worker registered; see {log_path}")
            time.sleep(0.1)
        time.sleep(2)  # let the first worker settle its partitions
        say(f"{name}: burst of {writes:,} writes from {PRODUCERS} producer processes")
        began = time.time()
        bounds = [(k * writes // PRODUCERS, (k + 1) * writes // PRODUCERS)
                  for k in range(PRODUCERS)]
        with multiprocessing.get_context("spawn").Pool(PRODUCERS) as pool:
            parts = pool.starmap(produce, [(settings, a, b) for a, b in bounds])
        acked = time.time() - began
        wanted: dict[tuple[int, str], int] = {}
        for part in parts:
            wanted.update(part)
        deadline = time.monotonic() + 300
        while not drained(client, settings, wanted):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: backlog not drained within 300 s")
            time.sleep(0.05)
        drain = time.time() - began
        say(f"{name}: acked in {acked:.1f}s, drained at {drain:.1f}s; waiting for scale-in")
        back_at_one = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            samples = record.samples(client, settings.cluster)
            if samples and samples[-1]["current"] == 1 and client.scard(keys.members) == 1:
                back_at_one = time.time() - began
                break
            time.sleep(0.1)
        time.sleep(1)
        samples = [s for s in record.samples(client, settings.cluster) if s["t"] >= began - 1]
    finally:
        if scaler.poll() is None:
            scaler.send_signal(signal.SIGTERM)
        try:
            scaler.wait(120)
        except subprocess.TimeoutExpired:
            scaler.kill()
            scaler.wait(10)
    log = log_path.read_text(errors="replace")
    return {"name": name, "acked_s": acked, "drained_s": drain, "back_at_one_s": back_at_one,
            "graceful": log.count("(exit 0, graceful)"), "killed": log.count("did not stop"),
            "early": log.count(", early)"),
            "failed": log.count(", failed)") + log.count("exited on its own"),
            "peak_workers": max(s["current"] for s in samples),
            "peak_backlog": max(s["backlog"] for s in samples),
            "series": [(round(s["t"] - began, 2), s["backlog"], s["current"]) for s in samples]}


def markdown(runs: list[dict[str, Any]], sizes: list[int], rounds: int, base: Settings,
             when: str, load: tuple[float, ...]) -> str:
    lines = [
        "# Autoscaling: a burst of writes, autoscaled vs a fixed single worker", "",
        f"- Date: {when}; command: `python -m benchmarks.autoscale --writes "
        f"{','.join(str(n) for n in sizes)} --rounds {rounds}` (rounds alternate which run "
        "goes first)",
        f"- Machine: {os.cpu_count()} cores; load average at start "
        f"{', '.join(f'{x:.2f}' for x in load)} (the machine may be shared)",
        f"- Burst: `incr` writes over 100,000 keys from {PRODUCERS} producer processes at "
        f"once, the pool at 1 worker when it starts; {base.partitions} partitions, "
        f"replicas {base.replicas}",
        f"- Autoscaler: target {base.autoscale_target:,} writes per worker, max 4, interval "
        f"{base.autoscale_interval_s:g} s, quiet window {base.autoscale_scale_down_after_s:g} s;"
        " the fixed run is the same autoscaler at --max 1",
        "- Drained: every acknowledged write applied and flushed to Redis; times from the "
        "burst's start; worker stops include the pool's own at the end of the run (early: "
        "SIGTERM while the worker was still starting, before it held anything)", "",
        "| writes | round | run | burst acked | backlog drained | peak backlog | peak workers "
        "| back at 1 worker | worker stops: graceful / early / failed / killed |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        back = "-" if r["back_at_one_s"] is None else f"{r['back_at_one_s']:.1f} s"
        lines.append(f"| {r['writes']:,} | {r['round']} | {r['name']} | {r['acked_s']:.1f} s | "
                     f"{r['drained_s']:.1f} s | {r['peak_backlog']:,} | {r['peak_workers']} | "
                     f"{back} | {r['graceful']} / {r['early']} / {r['failed']} / "
                     f"{r['killed']} |")
    for size in sizes:
        first = [r for r in runs if r["round"] == 1 and r["writes"] == size]
        lines += ["", f"Backlog (writes) and workers over time, {size:,} writes, round 1 "
                  "(the autoscaler's readings, every 0.5 s):", "",
                  "| t (s) | " + " | ".join(f"{r['name']} backlog | {r['name']} workers"
                                           for r in first) + " |",
                  "|" + "---:|" * (1 + 2 * len(first))]
        end = max(r["series"][-1][0] for r in first)
        for step in range(-1, int(end * 2) + 2):
            t = step / 2
            cells = []
            for r in first:
                seen = [x for x in r["series"] if x[0] <= t]
                cells += [f"{seen[-1][1]:,}", str(seen[-1][2])] if seen else ["", ""]
            lines.append(f"| {t:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], sizes: list[int], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib not installed (pip install -e '.[bench]'): no PNG")
        return False
    fig, axes = plt.subplots(2, len(sizes), sharex="col", squeeze=False,
                             figsize=(5.5 * len(sizes), 5.5))
    for col, size in enumerate(sizes):
        top, bottom = axes[0][col], axes[1][col]
        for r in [r for r in runs if r["round"] == 1 and r["writes"] == size]:
            t = [x[0] for x in r["series"]]
            top.plot(t, [x[1] for x in r["series"]], label=r["name"])
            top.axvline(r["drained_s"], linestyle=":", color=top.lines[-1].get_color())
            bottom.step(t, [x[2] for x in r["series"]], where="post", label=r["name"])
        top.set_title(f"burst of {size:,} writes (dotted: drained)")
        top.set_ylabel("backlog (writes)")
        top.legend(loc="upper right")
        bottom.set_ylabel("workers")
        bottom.set_xlabel("seconds since the burst started")
        bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autoscale",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--writes", default="200000,1000000",
                        help="comma-separated burst sizes (default 200000,1000000)")
    parser.add_argument("--runs", default="autoscaled,fixed")
    parser.add_argument("--rounds", type=int, default=2,
                        help="repeat the runs, alternating their order (default 2)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.writes.split(",")]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="liftline-autoscale-bench-"))
    servers = None
    amqp, redis_url = (os.environ.get("LIFTLINE_BENCH_AMQP_URL"),
                       os.environ.get("LIFTLINE_BENCH_REDIS_URL"))
    if not (amqp and redis_url):
        from liftline.servers import LocalServers

        say(f"starting RabbitMQ and Redis under {tmp}")
        servers = LocalServers(tmp / "servers")
        servers.start()
        amqp, redis_url = servers.endpoints.amqp_url, servers.endpoints.redis_url
    try:
        base = Settings.from_env({}, amqp_url=amqp, redis_url=redis_url, partitions=8,
                                 heartbeat_s=0.3, member_ttl_s=2.0, flush_interval_ms=100,
                                 autoscale_min=1, autoscale_target=20_000,
                                 autoscale_interval_s=0.5, autoscale_scale_down_after_s=3.0)
        client = redis.Redis.from_url(redis_url)
        runs = []
        names = args.runs.split(",")
        for size in sizes:
            for n in range(1, args.rounds + 1):
                for name in names if n % 2 else names[::-1]:  # alternate who goes first
                    run = one_run(name, base, client, size, 4 if name == "autoscaled" else 1,
                                  tmp / "logs", f"{name}-{size}-{n}")
                    runs.append({**run, "round": n, "writes": size})
        client.close()
    finally:
        if servers is not None:
            servers.kill()
    RESULTS.mkdir(exist_ok=True)
    text = markdown(runs, sizes, args.rounds, base, when, load)
    if plot(runs, sizes, RESULTS / "autoscale.png"):
        text += "\n![backlog and workers over time](autoscale.png)\n"
    (RESULTS / "autoscale.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
