"""What every scenario gets: the servers, the sizes and time limits, and the results."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cluster import settings_for
from benchmarks.env import BenchServers
from benchmarks.profiling import profiled
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
    submit_limit_s: float = 60.0   # any one producing phase
    confirm_limit_s: float = 60.0  # waiting for outstanding confirms
    apply_limit_s: float = 240.0   # the worker draining the backlog
    drain_limit_s: float = 60.0    # the worker catching up after an end-to-end run

    @classmethod
    def quick(cls) -> Sizes:
        return cls(writes=100_000, backlog=200_000, keyspace=1_000_000, duration_s=10.0,
                   submit_limit_s=20.0, confirm_limit_s=30.0, apply_limit_s=60.0,
                   drain_limit_s=20.0)


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

    def detail(self, name: str, **values: Any) -> None:
        self.results.details.setdefault(name, {}).update(values)

    @contextlib.contextmanager
    def profiled(self, pid: int, name: str) -> Iterator[None]:
        """py-spy samples of ``pid`` while the block runs, when ``--profile`` was given."""
        with profiled(self.profile, pid, name, self.output_dir / "profiles"):
            yield
