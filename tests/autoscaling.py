"""Run `liftline autoscale` as a child process in tests and benchmarks, and read
back what it did (import as ``from autoscaling import …``)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from pipeline import REPO, worker_env

from liftline.autoscale import record
from liftline.settings import Settings

_STARTED = re.compile(r"started worker pid (\d+) \(log (.+?)\)")
_STOPPED = re.compile(r"worker pid (\d+) stopped \(exit (-?\d+), (\w+)\)")
_KILLED = re.compile(r"worker pid (\d+) did not stop within")


class AutoscalerRun:
    """``python -m liftline autoscale`` (local backend) with its log in ``log_dir``."""

    def __init__(self, settings: Settings, client: redis.Redis, log_dir: Path, *,
                 app: str | None = None, worker_args: str = "") -> None:
        self.settings = settings
        self.client = client
        self.log_dir = log_dir
        self.log_path = log_dir / "autoscale.log"
        argv = [sys.executable, "-m", "liftline", "autoscale", "-v",
                "--log-dir", str(log_dir / "workers")]
        if app:
            argv += ["--app", app]
        if worker_args:
            argv += ["--worker-args", worker_args]
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, env=worker_env(settings), cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def samples(self) -> list[dict[str, Any]]:
        return record.samples(self.client, self.settings.cluster)

    def last(self) -> dict[str, Any] | None:
        return record.load(self.client, self.settings.cluster)

    def pool_pids(self) -> list[int]:
        state = self.last() or {}
        pool = state.get("pool") or {}
        return [*pool.get("pids", []), *pool.get("stopping", [])]

    def started_workers(self) -> dict[int, Path]:
        """pid → log file of every worker it started."""
        return {int(m[1]): Path(m[2]) for m in _STARTED.finditer(self.log())}

    def stopped_workers(self) -> dict[int, tuple[int, str]]:
        """pid → (exit code, how) of every worker it stopped."""
        return {int(m[1]): (int(m[2]), m[3]) for m in _STOPPED.finditer(self.log())}

    def killed_workers(self) -> list[int]:
        return [int(m[1]) for m in _KILLED.finditer(self.log())]

    def stop(self, timeout_s: float = 90) -> int | None:
        """SIGTERM (it stops its workers gracefully); then SIGKILL what is left, by PID."""
        pids = self.pool_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in pids:  # workers its pool started, should it have left any behind
            if pid in self.started_workers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return self.proc.returncode


def burst_part(settings: Settings, first: int, last: int) -> list[tuple[int, int, str, int]]:
    """Append ids ``first..last-1`` (history keys) as fast as one Producer can; the
    acknowledged ones as (id, partition, producer_id, seq). Runs in a child process."""
    from history import CAP, key_of

    from liftline import Producer

    out = []
    with Producer(settings) as producer:
        submit = producer.submit
        futures = [(i, submit("append", key_of(i), i, CAP)) for i in range(first, last)]
        for i, future in futures:
            ticket = future.result(120)
            out.append((i, ticket.partition, ticket.producer_id, ticket.seq))
    return out


def burst(settings: Settings, writes: int, processes: int = 2) -> tuple[Any, float]:
    """``writes`` appends of unique ids from ``processes`` producer processes at once
    (one process alone does not outrun a worker on two cores). Returns the History
    of what was acknowledged and the seconds it took."""
    import multiprocessing

    from history import History

    from liftline.tickets import Ticket

    history = History()
    history.attempted.update(range(1, writes + 1))
    bounds = [(1 + k * writes // processes, 1 + (k + 1) * writes // processes)
              for k in range(processes)]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.starmap(burst_part, [(settings, a, b) for a, b in bounds])
    took = time.monotonic() - started
    for part in parts:
        for i, partition, producer_id, seq in part:
            history.acked.add(i)
            history.tickets.append(Ticket(partition, producer_id, seq))
    return history, took
