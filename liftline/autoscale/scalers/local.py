"""A local pool of ``python -m liftline worker`` processes.

Scaling out spawns workers. Scaling in SIGTERMs the newest workers (the oldest
hold warm partitions longest) and lets them go: a worker stops consuming,
flushes, hands its partitions over, finishes its running jobs and exits 0. One
that has not exited after ``stop_timeout_s`` is SIGKILLed; its partitions fail
over to their standbys when its heartbeat expires, and its unacked jobs are
redelivered, so nothing acknowledged is lost either way. Only processes this
pool started are ever signalled, by PID.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftline.autoscale.scalers.base import Scaler
from liftline.procs import spawn
from liftline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class PoolWorker:
    """One worker process of the pool."""

    number: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    stop_deadline: float | None = None  # set once SIGTERMed

    @property
    def pid(self) -> int:
        return self.proc.pid


class LocalPool(Scaler):
    """Worker processes on this machine; ``exits`` keeps how each one ended."""

    name = "local"

    def __init__(self, settings: Settings, log_dir: Path, *, app: str | None = None,
                 worker_args: tuple[str, ...] = (), stop_timeout_s: float | None = None,
                 cwd: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.app = app
        self.worker_args = worker_args
        self.stop_timeout_s = stop_timeout_s or settings.autoscale_stop_timeout_s
        self.cwd = cwd
        self.workers: list[PoolWorker] = []
        self.exits: list[dict[str, Any]] = []  # pid, code, how: graceful | killed | died
        self._spawned = 0

    # -- Scaler --------------------------------------------------------------
    def current(self) -> int:
        return len(self.running())

    def running(self) -> list[PoolWorker]:
        return [w for w in self.workers if w.stop_deadline is None and w.proc.poll() is None]

    def stopping(self) -> list[PoolWorker]:
        return [w for w in self.workers if w.stop_deadline is not None]

    def scale_to(self, n: int) -> None:
        running = self.running()
        for _ in range(n - len(running)):
            self._spawn()
        if n < len(running):
            for worker in sorted(running, key=lambda w: w.number)[n:]:
                self._stop(worker)

    def poll(self) -> None:
        """Reap workers that exited; SIGKILL those past their stop timeout."""
        now = time.monotonic()
        for worker in list(self.workers):
            code = worker.proc.poll()
            if code is None:
                if worker.stop_deadline is not None and now >= worker.stop_deadline:
                    log.warning("worker pid %d did not stop within %.0fs; killing it (its "
                                "partitions fail over, its jobs are redelivered)",
                                worker.pid, self.stop_timeout_s)
                    worker.proc.kill()
                    worker.proc.wait(10)
                    self._reaped(worker, "killed")
                continue
            if worker.stop_deadline is None:
                log.warning("worker pid %d exited on its own with %s; see %s", worker.pid, code,
                            worker.log_path)
                self._reaped(worker, "died")
            else:
                # -SIGTERM: the signal came before the worker installed its handler,
                # i.e. before it registered: it held no partition and no job yet.
                how = {0: "graceful", -signal.SIGTERM: "early"}.get(code, "failed")
                log.info("worker pid %d stopped (exit %d, %s) after %.1fs", worker.pid, code,
                         how, time.monotonic() - (worker.stop_deadline - self.stop_timeout_s))
                self._reaped(worker, how)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "current": self.current(),
                "pids": [w.pid for w in self.running()],
                "stopping": [w.pid for w in self.stopping()],
                "log_dir": str(self.log_dir)}

    def close(self) -> None:
        """Stop every worker gracefully (SIGTERM), SIGKILL after the stop timeout."""
        for worker in self.running():
            self._stop(worker)
        deadline = time.monotonic() + self.stop_timeout_s + 1
        while self.workers and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.05)
        for worker in list(self.workers):
            worker.stop_deadline = 0.0
        self.poll()

    # -- processes -----------------------------------------------------------
    def _spawn(self) -> PoolWorker:
        self._spawned += 1
        number = self._spawned
        argv = [sys.executable, "-m", "liftline", "worker", "-v", *self.worker_args]
        if self.app:
            argv += ["--app", self.app]
        log_path = self.log_dir / f"worker-{os.getpid()}-{number}.log"
        proc = spawn(argv, env=self.settings.child_env(), log_path=log_path, cwd=self.cwd)
        worker = PoolWorker(number, proc, log_path)
        self.workers.append(worker)
        log.info("started worker pid %d (log %s)", proc.pid, log_path)
        return worker

    def _stop(self, worker: PoolWorker) -> None:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
        worker.stop_deadline = time.monotonic() + self.stop_timeout_s
        log.info("stopping worker pid %d (SIGTERM: flush, hand over, finish jobs)", worker.pid)

    def _reaped(self, worker: PoolWorker, how: str) -> None:
        self.workers.remove(worker)
        self.exits.append({"pid": worker.pid, "code": worker.proc.returncode, "how": how,
                           "log": str(worker.log_path)})
