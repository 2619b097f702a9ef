"""What every scenario gets: the servers, the sizes and time limits, and the results."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cluster import settings_for
from benchmarks.env import BenchServers, background_cores
from benchmarks.profiling import profiled
from benchmarks.progress import say
from benchmarks.report import RESULTS_DIR, Results
from benchmarks.workload import Op, mixed_ops
from liftline.settings import Settings


@dataclass
class Sizes:
    """Counts, durations and time limits of one run (``--quick`` shrinks them)."""

    writes: int = 500_000          # producer and baseline scenarios
    backlog: int = 1_000_000       # worker-apply scenario
    keyspace: int = 1_000_000      # distinct keys of the backlog
    duration_s: float = 60.0       # each end-to-end run
    paced_rate: int = 30_000
    e2e_many_writes: int = 2_000_000  # the end-to-end run through submit_many
    submit_limit_s: float = 60.0   # any one producing phase
    confirm_limit_s: float = 60.0  # waiting for outstanding confirms
    apply_limit_s: float = 240.0   # the worker draining the backlog
    drain_limit_s: float = 60.0    # the worker catching up after an end-to-end run
    jobs: int = 20_000             # jobs scenario: no-op jobs per system
    jobs_submit_limit_s: float = 180.0
    jobs_drain_limit_s: float = 180.0
    jobs_single_limit_s: float = 20.0  # liftline's one-by-one enqueue (slow: see jobs.md)
    jobs_unconfirmed: bool = True  # also Celery and Dramatiq without publisher confirms
    cluster_duration_s: float = 30.0   # cluster scenario: each R=1 / R=2 write run
    recovery_keys: int = 1_000_000     # cluster scenario: keys of the recovered partition set
    failover_repeats: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(writes=100_000, backlog=200_000, keyspace=1_000_000, duration_s=10.0,
                   e2e_many_writes=400_000,
                   submit_limit_s=20.0, confirm_limit_s=30.0, apply_limit_s=60.0,
                   drain_limit_s=20.0, jobs=3_000, jobs_submit_limit_s=60.0,
                   jobs_drain_limit_s=60.0, jobs_single_limit_s=10.0,
                   cluster_duration_s=10.0, recovery_keys=200_000)


@dataclass
class Context:
    servers: BenchServers
    sizes: Sizes
    results: Results
    log_dir: Path
    quick: bool = False
    profile: bool = False
    output_dir: Path = RESULTS_DIR
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    wait_quiet_s: float = 0.0  # --wait-quiet: also before each trial of the jobs/cluster scenarios
    _ops: dict[int, list[Op]] = field(default_factory=dict)

    def settings(self, scenario: str) -> Settings:
        """Settings of a fresh cluster for ``scenario`` (its own name per run)."""
        return settings_for(self.servers.amqp_url, self.servers.redis_url,
                            f"bench-{scenario}-{self.run_id}")

    def ops(self, count: int) -> list[Op]:
        """The mixed producer workload (80% incr over 100k keys, 20% set), cached."""
        if count not in self._ops:
            self._ops[count] = mixed_ops(count)
        return self._ops[count]

    def pids(self, **more: int) -> dict[str, int]:
        """Processes to account CPU to: this one, the servers, and ``more``."""
        return {"bench": os.getpid(), **self.servers.server_pids(), **more}

    def quiet(self, what: str, threshold: float = 0.3) -> float | None:
        """With --wait-quiet S: wait up to S seconds until other processes use less than
        ``threshold`` cores (as the run does before each scenario); the cores they used
        last. None without --wait-quiet."""
        if self.wait_quiet_s <= 0:
            return None
        ignore = tuple(self.servers.server_pids().values())
        deadline = time.monotonic() + self.wait_quiet_s
        while True:
            busy = background_cores(1.0, ignore)
            if busy < threshold or time.monotonic() >= deadline:
                break
            say(f"{what}: other processes keep {busy:.2f} cores busy; waiting")
        return round(busy, 2)

    def detail(self, name: str, **values: Any) -> None:
        self.results.details.setdefault(name, {}).update(values)

    @contextlib.contextmanager
    def profiled(self, pid: int, name: str) -> Iterator[None]:
        """py-spy samples of ``pid`` while the block runs, when ``--profile`` was given."""
        with profiled(self.profile, pid, name, self.output_dir / "profiles"):
            yield


def write_side_report(ctx: Context, name: str, text: str) -> tuple[Path, Path]:
    """``<output dir>/<name>.md`` (the scenario's own tables) and ``<name>.json`` (the run's
    meta, this scenario's figures, details and CPU rows), so that an ``--only`` run of the
    scenario leaves a report of its own beside latest.md. Returns the paths as shown."""
    import json
    from dataclasses import asdict

    ctx.results.finish()  # judge the targets now (the run does it again at its end)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = ctx.output_dir / f"{name}.md", ctx.output_dir / f"{name}.json"
    md_path.write_text(text)
    payload = {
        "meta": ctx.results.meta,
        "figures": [asdict(f) for f in ctx.results.figures if f.scenario == name],
        "details": ctx.results.details.get(name, {}),
        "cpu_cores": {k: v for k, v in ctx.results.cpu.items() if k.startswith(name)},
        "errors": {k: v for k, v in ctx.results.errors.items() if k.startswith(name)},
    }
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return _shown(md_path), _shown(json_path)


def _shown(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path
