"""``python -m benchmarks.run [--quick] [--only producer,baseline,worker,e2e,jobs,cluster]``

Starts its own RabbitMQ and Redis (or uses LIFTLINE_BENCH_AMQP_URL /
LIFTLINE_BENCH_REDIS_URL), runs the scenarios, prints a markdown table on
stdout (progress goes to stderr) and writes benchmarks/results/latest.md and
latest.json. Every scenario is bounded in count and in time; Ctrl-C stops the
run, stops what it started and still writes what was measured.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from benchmarks.cluster_bench import run_cluster
from benchmarks.context import Context, Sizes
from benchmarks.e2e import run_e2e
from benchmarks.env import BenchServers, background_cores, command_line, machine, versions
from benchmarks.jobs import run_jobs
from benchmarks.producer_bench import run_producer
from benchmarks.progress import say
from benchmarks.report import RESULTS_DIR, Results, markdown, write
from benchmarks.worker_apply import run_worker_apply
from benchmarks.write_path import run_baseline

QUIET_CORES = 0.3
SCENARIOS: dict[str, Callable[[Context], None]] = {
    "producer": run_producer,
    "baseline": run_baseline,
    "worker": run_worker_apply,
    "e2e": run_e2e,
    "jobs": run_jobs,
    "cluster": run_cluster,
}
# What a run without --only measures (make bench): every scenario.
DEFAULT_SCENARIOS = list(SCENARIOS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmarks of the liftline write path (see benchmarks/results/latest.md).",
    )
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts and 10 s end-to-end runs (about 2 minutes)")
    parser.add_argument("--only", default=",".join(DEFAULT_SCENARIOS), metavar="LIST",
                        help=f"comma-separated scenarios out of {','.join(SCENARIOS)} "
                             f"(default {','.join(DEFAULT_SCENARIOS)})")
    parser.add_argument("--writes", type=int, metavar="N",
                        help="writes of the producer and baseline scenarios "
                             "(default 500,000; 100,000 with --quick)")
    parser.add_argument("--backlog", type=int, metavar="M",
                        help="writes of the worker-apply backlog (default 1,000,000; "
                             "200,000 with --quick)")
    parser.add_argument("--keyspace", type=int, metavar="K",
                        help="distinct keys of the worker-apply backlog (default 1,000,000); "
                             "time limits grow with backlog and keyspace past a million")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="seconds of each end-to-end run (default 60; 10 with --quick)")
    parser.add_argument("--rate", type=int, metavar="R",
                        help="writes/s offered in the paced end-to-end run (default 30,000)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="no-op jobs per system in the jobs scenario (default 20,000; "
                             "3,000 with --quick)")
    parser.add_argument("--recovery-keys", type=int, metavar="K",
                        help="keys of the partition set the cluster scenario recovers "
                             "(default 1,000,000; 200,000 with --quick)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR,
                        help="where latest.md and latest.json go (default benchmarks/results)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the measured processes with py-spy (if installed) and "
                             "write profiles/profile-*.txt next to the results")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each scenario, wait up to S seconds for other processes "
                             "to use less than 0.3 cores (the machine may be shared)")
    parser.add_argument("--log-dir", type=Path, metavar="DIR",
                        help="keep the workers' logs in DIR (default: a temporary directory)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 when a target is missed (default: report only)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or not chosen:
        parser.error(f"--only: unknown scenario(s) {unknown}; choose from {','.join(SCENARIOS)}")
    args.scenarios = [s for s in SCENARIOS if s in chosen]
    for name in ("writes", "backlog", "keyspace", "duration", "rate", "jobs", "recovery_keys"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def _wait_quiet(ctx: Context, limit_s: float) -> float:
    """Cores other processes keep busy now; waits up to ``limit_s`` for that to drop."""
    ignore = tuple(ctx.servers.server_pids().values())
    deadline = time.monotonic() + limit_s
    while True:
        busy = background_cores(1.0, ignore)
        if busy < QUIET_CORES or time.monotonic() >= deadline:
            break
        say(f"other processes keep {busy:.2f} cores busy; waiting for a quieter machine")
    if busy >= QUIET_CORES:
        say(f"warning: other processes keep {busy:.2f} of {os.cpu_count()} cores busy; "
            "the figures will be lower than on an idle machine")
    return round(busy, 2)


def _worker_importable() -> str:
    """'' if a worker process could import liftline's CLI and worker now; else why not."""
    check = subprocess.run(
        [sys.executable, "-c", "import liftline.cli.main, liftline.workers.partition_worker"],
        capture_output=True, text=True, timeout=60, check=False)
    if check.returncode == 0:
        return ""
    lines = check.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {check.returncode}"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.writes:
        sizes.writes = args.writes
    if args.backlog:
        sizes.backlog = args.backlog
    if args.keyspace:
        sizes.keyspace = args.keyspace
    scale = max(sizes.backlog, sizes.keyspace) / 1_000_000
    if scale > 1:  # a larger backlog gets proportionally more time, never less
        sizes.submit_limit_s *= scale
        sizes.confirm_limit_s *= scale
        sizes.apply_limit_s *= scale
    if args.duration:
        sizes.duration_s = args.duration
    if args.rate:
        sizes.paced_rate = args.rate
    if args.jobs:
        sizes.jobs = args.jobs
    if args.recovery_keys:
        sizes.recovery_keys = args.recovery_keys
    # Both end the run the same way, cleanly; SIGINT explicitly, because a shell starts
    # background jobs with SIGINT ignored, and Python then installs no handler of its own.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)

    results = Results()
    results.meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command_line(),
        "quick": args.quick,
        "scenarios": args.scenarios,
        "machine": machine(),
        "sizes": vars(sizes),
        "workload": (
            f"producer/baseline: {sizes.writes:,} writes, 80% incr by 1 over 100,000 keys, "
            "20% set of a 3-field dict over 100,000 other keys; worker: a backlog of "
            f"{sizes.backlog:,} writes over {min(sizes.backlog, sizes.keyspace):,} distinct keys "
            "(60% set, 35% incr, 5% merge); e2e: the producer mix, "
            f"{sizes.paced_rate:,}/s paced and flat out, {sizes.duration_s:.0f}s each; "
            "16 partitions, default Settings (linger 5 ms, flush every 250 ms)"
        ),
    }
    status = "complete"
    began = time.monotonic()
    if {"worker", "e2e", "jobs", "cluster"} & set(args.scenarios):
        problem = _worker_importable()
        if problem:
            say(f"`python -m liftline worker` cannot start: {problem}")
            return 1
    try:
        with BenchServers() as servers, tempfile.TemporaryDirectory(
                prefix="liftline-bench-logs-") as tmp_logs:
            logs = args.log_dir or Path(tmp_logs)
            logs.mkdir(parents=True, exist_ok=True)
            results.meta["versions"] = versions(servers)
            results.meta["servers"] = (
                "given by LIFTLINE_BENCH_AMQP_URL / LIFTLINE_BENCH_REDIS_URL" if servers.external
                else "started by the benchmark (liftline.servers.local.LocalServers), "
                     "on loopback, Redis with appendonly everysec")
            ctx = Context(servers=servers, sizes=sizes, results=results, log_dir=logs,
                          quick=args.quick, profile=args.profile, output_dir=args.output_dir,
                          wait_quiet_s=args.wait_quiet)
            results.meta["background_cores_at_start"] = _wait_quiet(ctx, args.wait_quiet)
            for n, name in enumerate(args.scenarios):
                if n and args.wait_quiet:
                    busy = _wait_quiet(ctx, args.wait_quiet)
                    results.meta.setdefault("background_cores_before", {})[name] = busy
                say(f"=== scenario {name} ===")
                t0 = time.monotonic()
                try:
                    SCENARIOS[name](ctx)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    results.errors[name] = "".join(traceback.format_exception(exc))
                    say(f"scenario {name} failed: {exc!r}")
                say(f"=== scenario {name} done in {time.monotonic() - t0:.1f}s ===")
    except KeyboardInterrupt:
        status = "interrupted"
        say("interrupted: stopped what was started; writing what was measured")
    except Exception as exc:
        status = "failed"
        results.errors["run"] = "".join(traceback.format_exception(exc))
        say(f"run failed: {exc!r}")
    busy = {phase: row.get("others", 0.0) for phase, row in results.cpu.items()}
    if busy and max(busy.values()) >= QUIET_CORES:
        worst = max(busy, key=lambda phase: busy[phase])
        results.notes.append(
            f"Other processes on this machine used up to {busy[worst]:.2f} cores while "
            f"measuring ({worst}); with {os.cpu_count()} cores in all, the figures are lower "
            "than on an idle machine and vary between runs.")
    if results.errors and status == "complete":
        status = f"complete, {len(results.errors)} scenario(s) failed"
    results.meta["status"] = status
    results.meta["elapsed_s"] = round(time.monotonic() - began, 1)
    results.meta.setdefault("versions", {})
    results.finish()
    md_path, json_path = write(results, args.output_dir)
    sys.stdout.write(markdown(results))
    sys.stdout.flush()
    say(f"wrote {md_path} and {json_path}")
    if status == "interrupted":
        return 130
    if results.errors:
        return 1
    if args.strict and any(f.passed is False for f in results.figures):
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
