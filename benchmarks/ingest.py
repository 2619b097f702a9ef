"""``python -m benchmarks.ingest``: the HTTP ingest service under wrk, against a baseline.

The whole stack on this machine: RabbitMQ and Redis (started here, or
LIFTLINE_BENCH_* URLs), one worker with the ski-resort app, and ``liftline
ingest`` with 1 and 2 processes. wrk (64 connections, 2 threads) posts

- lift rides (``POST /skiers/…``, three writes each), and
- batches (``POST /v1/batch``, 100 incr writes each),

and then the same lift-ride requests go to a bare Starlette handler that writes
straight to Redis (``benchmarks/ingest_baseline.py``), served the same way.
After each lift-ride run the rides applied by the worker are counted in Redis:
at least every 2xx answer must be there. With ``--client N`` the package's own load
client (``examples.skiresort.client``) posts N rides to each lift-ride server too,
after wrk. Results: benchmarks/results/ingest.md
(and printed). Bounded: every wrk run lasts --duration seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import redis

from benchmarks.cluster import cleanup, settings_for, worker_env
from benchmarks.env import REPO, BenchServers, CpuMeter, background_cores, machine
from benchmarks.progress import say
from liftline.ingest.process import IngestProcess
from liftline.servers.base import free_port, wait_for_port
from liftline.settings import Settings
from liftline.store.keys import Keys

SKI = "examples.skiresort:app"
WRK_DIR = Path(__file__).resolve().parent / "wrk"
RESULTS = Path(__file__).resolve().parent / "results" / "ingest.md"
TARGET_RPS = 6000.0  # the lift-ride target of issue #4


def wrk(url: str, script: str, duration_s: float, connections: int, threads: int
        ) -> dict[str, Any]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:.0f}s", "--latency",
            "--timeout", "10s", "-s", str(WRK_DIR / script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60,
                         check=True).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "timeout"))
    return figures


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's server processes)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Run:
    def __init__(self, args: argparse.Namespace, servers: BenchServers, logs: Path) -> None:
        self.args = args
        self.servers = servers
        self.logs = logs
        self.settings = settings_for(servers.amqp_url, servers.redis_url,
                                     f"bench-ingest-{secrets.token_hex(3)}").replace(
            partitions=args.partitions, ingest_linger_ms=args.linger_ms)
        self.client = redis.Redis.from_url(servers.redis_url)
        self.rows: list[dict[str, Any]] = []
        self.client_rows: list[dict[str, Any]] = []
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        with open(self.logs / "worker.log", "ab") as out:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "liftline", "worker", "--app", SKI],
                env=worker_env(self.settings), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def measure(self, name: str, url: str, script: str, pids: dict[str, int],
                writes_per_request: int) -> dict[str, Any]:
        a = self.args
        if a.wait_quiet:
            self.wait_quiet(pids)
        warm = wrk(url, script, 2, a.connections, a.threads)  # warm-up: connections, caches
        meter = CpuMeter({**self.servers.server_pids(), **pids}).start()
        figures = wrk(url, script, a.duration, a.connections, a.threads)
        figures["cpu"] = meter.stop()
        figures["name"] = name
        figures["writes_per_s"] = figures["rps"] * writes_per_request
        figures["warmup_acked"] = warm["requests"] - warm["non2xx"]
        say(f"{name}: {figures['rps']:,.0f} req/s, p99 {figures['p99_us'] / 1000:.1f} ms, "
            f"non-2xx {figures['non2xx']}, socket errors {figures['errors']}")
        self.rows.append(figures)
        return figures

    def measure_client(self, name: str, url: str, pids: dict[str, int]) -> None:
        """The package's own load client (``examples.skiresort.client``, --client rides,
        no read-back) against ``url``: its throughput and latency, and the CPU used."""
        a = self.args
        if a.wait_quiet:
            self.wait_quiet(pids)
        out = self.logs / f"client-{len(self.client_rows)}"
        meter = CpuMeter({**self.servers.server_pids(), **pids}).start()
        limit_s = max(120.0, a.client / 100)
        with open(self.logs / "client.log", "ab") as log:
            try:
                subprocess.run([sys.executable, "-m", "examples.skiresort.client", "--url", url,
                                "--total", str(a.client), "--read-back", "none",
                                "--out", str(out)], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, timeout=limit_s, check=False)
            except subprocess.TimeoutExpired:
                say(f"{name}: the load client did not finish in {limit_s:.0f} s; stopped")
        cpu = meter.stop()
        try:
            figures = json.loads((out / "summary.json").read_text())
        except (OSError, ValueError):
            say(f"{name}: the load client wrote no summary (see {self.logs / 'client.log'})")
            return
        figures["name"], figures["cpu"] = name, cpu
        lat = figures["latency_ms"]
        say(f"{name}: {figures['throughput_per_s']:,.0f} rides/s, p99 {lat['p99']} ms, "
            f"failures {figures['failures']}")
        self.client_rows.append(figures)

    def wait_quiet(self, pids: dict[str, int]) -> None:
        """Wait (up to --wait-quiet s) until other processes use < 0.3 cores: a shared machine."""
        ignore = (*self.servers.server_pids().values(), *pids.values())
        deadline = time.monotonic() + self.args.wait_quiet
        busy = background_cores(1.0, ignore)
        while busy >= 0.3 and time.monotonic() < deadline:
            say(f"other processes keep {busy:.2f} cores busy; waiting")
            busy = background_cores(2.0, ignore)

    def rides_applied(self) -> int:
        keys = Keys(self.settings.cluster)
        total = 0
        for p in range(self.settings.partitions):
            for key, raw in self.client.hgetall(keys.data(p)).items():
                if b":skier:" in key and not key.endswith(b":seasons"):
                    total += msgpack.unpackb(raw, raw=False)[0]["rides"]
        return total

    def wait_applied(self, at_least: int, timeout_s: float = 90) -> int:
        deadline = time.monotonic() + timeout_s
        seen = self.rides_applied()
        while seen < at_least and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = self.rides_applied()
        return seen

    def liftline(self, processes: int) -> None:
        port = free_port()
        server = IngestProcess(self.settings, self.logs / f"ingest-{processes}.log", port=port,
                               processes=processes, app=SKI, cwd=REPO,
                               extra_env={"PYTHONPATH": str(REPO)}).start()
        try:
            server.wait_ready(60)
            time.sleep(1.0)  # let every server process finish connecting
            pids = {"ingest": server.pid or 0, "worker": self.worker.pid if self.worker else 0}
            for n, child in enumerate(children(server.pid or 0)):
                pids[f"ingest.{n}"] = child
            before = self.rides_applied()
            ride = self.measure(f"lift rides, liftline, {processes} process(es)", server.url,
                                "lift_ride.lua", pids, 3)
            acked = ride["requests"] - ride["non2xx"] + ride["warmup_acked"]
            applied = self.wait_applied(before + acked) - before
            ride["acked"], ride["applied"] = acked, applied
            say(f"  rides acknowledged (2xx) {acked:,}, applied by the worker {applied:,}")
            self.measure(f"batches of 100, liftline, {processes} process(es)", server.url,
                         "batch.lua", pids, 100)
            if self.args.client:
                self.measure_client(f"load client, liftline, {processes} process(es)",
                                    server.url, pids)
        finally:
            server.stop()

    def baseline(self, processes: int) -> None:
        port = free_port()
        with open(self.logs / f"baseline-{processes}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.ingest_baseline", str(port), str(processes),
                 self.servers.redis_url], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            wait_for_port("127.0.0.1", port, 30)
            time.sleep(1.0)
            pids = {"baseline": proc.pid}
            for n, child in enumerate(children(proc.pid)):
                pids[f"baseline.{n}"] = child
            self.measure(f"lift rides, bare Starlette → Redis, {processes} process(es)",
                         f"http://127.0.0.1:{port}", "lift_ride.lua", pids, 3)
            if self.args.client:
                self.measure_client(f"load client, bare Starlette → Redis, {processes} "
                                    "process(es)", f"http://127.0.0.1:{port}", pids)
        finally:
            proc.terminate()
            proc.wait(30)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(60)
        cleanup(self.settings)
        self.client.close()


def _cpu(cpu: dict[str, Any]) -> str:
    groups: dict[str, float] = {}
    for name, cores in cpu.items():
        if name in ("wall_s", "machine"):
            continue
        group = name.split(".")[0]
        groups[group] = groups.get(group, 0.0) + cores
    return ", ".join(f"{k} {v:.2f}" for k, v in groups.items()) + f" (machine {cpu['machine']:.2f})"


def report(run: Run, meta: dict[str, Any]) -> str:
    lines = [
        "# HTTP ingest benchmark", "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['machine']['nproc']} cores, {meta['machine']['cpu_model']}, "
        f"{meta['machine']['ram_gib']} GiB RAM; everything (wrk, ingest, worker, RabbitMQ, "
        "Redis) on it",
        f"- wrk: {run.args.threads} threads, {run.args.connections} connections, "
        f"{run.args.duration:.0f} s per run after a 2 s warm-up; {run.args.partitions} "
        f"partitions; ingest linger {run.args.linger_ms:g} ms; one worker "
        f"with the ski-resort app; uvicorn with {_uvicorn_stack()}",
        "- The machine may be shared: `others` in the CPU column is what other processes "
        "used while measuring",
        "- Lift ride = `POST /skiers/{resort}/seasons/2025/days/{day}/skiers/{skier}` "
        "`{\"time\", \"liftID\"}` = 3 writes, answered 201 once RabbitMQ confirmed them; "
        "batch = `POST /v1/batch` with 100 `incr` writes",
        "",
        "| Run | req/s | writes/s | mean ms | p50 ms | p99 ms | max ms | non-2xx |"
        " socket errors | CPU cores while measuring |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.rows:
        lines.append(
            f"| {r['name']} | {r['rps']:,.0f} | {r['writes_per_s']:,.0f} | "
            f"{r['mean_us'] / 1000:.1f} | {r['p50_us'] / 1000:.1f} | {r['p99_us'] / 1000:.1f} | "
            f"{r['max_us'] / 1000:.1f} | {r['non2xx']} | {r['errors']} | {_cpu(r['cpu'])} |")
    lines.append("")
    by_name = {r["name"]: r for r in run.rows}
    for n in run.args.processes:
        ours = by_name.get(f"lift rides, liftline, {n} process(es)")
        base = by_name.get(f"lift rides, bare Starlette → Redis, {n} process(es)")
        if ours and base:
            lines.append(f"- {n} process(es): liftline lift rides / bare Starlette → Redis = "
                         f"{ours['rps'] / base['rps']:.2f}× req/s "
                         f"(p99 {ours['p99_us'] / 1000:.1f} vs {base['p99_us'] / 1000:.1f} ms)")
        if ours and "acked" in ours:
            verdict = "all applied" if ours["applied"] >= ours["acked"] else "MISSING WRITES"
            lines.append(f"- {n} process(es): lift rides answered 2xx (warm-up included) "
                         f"{ours['acked']:,}; "
                         f"applied by the worker {ours['applied']:,} ({verdict}; requests still"
                         " in flight when wrk stopped may be applied without being counted)")
    lines += ["", *cpu_budget(run.rows), "", *client_table(run), ""]
    return "\n".join(lines)


def client_table(run: Run) -> list[str]:
    """The load client's runs (``--client N``), and liftline against the baseline."""
    if not run.client_rows:
        return []
    out = [f"## The package's own load client (`python -m examples.skiresort.client --total "
           f"{run.args.client} --read-back none`: 32 threads of 1,000 rides, then 200 "
           "threads, one connection each)", "",
           "| Run | rides/s | 201s | failures | mean ms | p50 ms | p99 ms | max ms |"
           " CPU cores while measuring |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in run.client_rows:
        lat = r["latency_ms"]
        out.append(f"| {r['name']} | {r['throughput_per_s']:,.0f} | {r['successes']:,} | "
                   f"{r['failures']} | {lat['mean']} | {lat['median']} | {lat['p99']} | "
                   f"{lat['max']} | {_cpu(r['cpu'])} |")
    by_name = {r["name"]: r for r in run.client_rows}
    out.append("")
    for n in run.args.processes:
        ours = by_name.get(f"load client, liftline, {n} process(es)")
        base = by_name.get(f"load client, bare Starlette → Redis, {n} process(es)")
        if ours and base and base["throughput_per_s"]:
            out.append(f"- {n} process(es): liftline / bare Starlette → Redis with the load "
                       f"client = {ours['throughput_per_s'] / base['throughput_per_s']:.2f}× "
                       f"rides/s (p99 {ours['latency_ms']['p99']} vs "
                       f"{base['latency_ms']['p99']} ms)")
    return out


def _uvicorn_stack() -> str:
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "the asyncio loop"
    return f"{http} and {loop}"


def cpu_budget(rows: list[dict[str, Any]], target_rps: float = TARGET_RPS) -> list[str]:
    """CPU time per request by process group, and the cores ``target_rps`` would take."""
    out = [f"## CPU per request (µs of CPU time; `others` = wrk and the kernel), and the cores "
           f"{target_rps:,.0f} req/s would need at that cost (the machine has "
           f"{os.cpu_count()})", "",
           "| Run | µs per request by process | total µs | cores at "
           f"{target_rps:,.0f} req/s |", "|---|---|---:|---:|"]
    for r in rows:
        if not r["rps"]:
            continue
        groups: dict[str, float] = {}
        for name, cores in r["cpu"].items():
            if name in ("wall_s", "machine"):
                continue
            group = name.split(".")[0]
            groups[group] = groups.get(group, 0.0) + cores * 1e6 / r["rps"]
        total = r["cpu"]["machine"] * 1e6 / r["rps"]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in groups.items() if v >= 0.5)
        out.append(f"| {r['name']} | {parts} | {total:.0f} | {total * target_rps / 1e6:.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", default="1,2",
                        help="ingest process counts to measure (default 1,2)")
    parser.add_argument("--partitions", type=int, default=16,
                        help="partitions of the benchmark's cluster (default 16)")
    parser.add_argument("--linger-ms", type=float, default=Settings().ingest_linger_ms,
                        help="ingest_linger_ms of the ingest processes (default %(default)s)")
    parser.add_argument("--client", type=int, default=0, metavar="RIDES",
                        help="also post RIDES lift rides with the package's load client "
                        "(examples.skiresort.client) to each lift-ride server (default: no)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each run, wait up to S s for other processes to go quiet")
    args = parser.parse_args(argv)
    args.processes = [int(n) for n in args.processes.split(",") if n.strip()]
    if args.client < 0:
        parser.error("--client: a number of rides, 0 for none")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    meta = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(["python -m benchmarks.ingest", *(argv or sys.argv[1:])]),
            "machine": machine()}
    with BenchServers() as servers, tempfile.TemporaryDirectory(prefix="liftline-ingest-") as tmp:
        run = Run(args, servers, Path(tmp))
        try:
            run.start_worker()
            for n in args.processes:
                run.liftline(n)
            for n in args.processes:
                run.baseline(n)
        finally:
            run.stop()
    text = report(run, meta)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    sys.stdout.write(text)
    say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
