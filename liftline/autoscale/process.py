"""`liftline autoscale` as a child process of `liftline up --autoscale MIN:MAX`.

The child owns the worker pool (local backend): SIGTERM makes it stop its
workers gracefully before it exits, so :meth:`AutoscalerProcess.stop` waits for
the workers' stop timeout plus a margin before it would SIGKILL. Only the
process started here is signalled, by PID.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from liftline.errors import ServerError
from liftline.procs import spawn, terminate
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.store.redis_store import connect


def parse_bounds(text: str) -> tuple[int, int]:
    """``"1:6"`` → (1, 6); ValueError with the reason otherwise."""
    low, sep, high = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r}: expected MIN:MAX, e.g. 1:6")
    lo, hi = int(low), int(high)
    if not 0 <= lo <= hi or hi < 1:
        raise ValueError(f"{text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return lo, hi


class AutoscalerProcess:
    """One ``python -m liftline autoscale`` with the local backend."""

    def __init__(self, settings: Settings, log_path: Path, worker_log_dir: Path, *,
                 bounds: tuple[int, int], app: str | None = None) -> None:
        self.settings = settings.replace(autoscale_min=bounds[0], autoscale_max=bounds[1],
                                         autoscale_backend="local")
        self.log_path = log_path
        self.worker_log_dir = worker_log_dir
        self.app = app
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> AutoscalerProcess:
        argv = [sys.executable, "-m", "liftline", "autoscale", "-v",
                "--log-dir", str(self.worker_log_dir)]
        if self.app:
            argv += ["--app", self.app]
        self.proc = spawn(argv, env=self.settings.child_env(), log_path=self.log_path)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """Block until MIN workers are registered; their count. ServerError otherwise."""
        want = self.settings.autoscale_min
        keys = Keys(self.settings.cluster)
        client = connect(self.settings.redis_url)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise ServerError(f"the autoscaler exited; see {self.log_path}")
                members = client.scard(keys.members)
                if members >= want and client.exists(keys.autoscale):
                    return int(members)
                time.sleep(0.1)
        finally:
            client.close()
        raise ServerError(f"the autoscaler did not start {want} worker(s) within "
                          f"{timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> int | None:
        """SIGTERM (it stops its workers gracefully first); SIGKILL only past their timeout."""
        if self.proc is None:
            return None
        return terminate(self.proc, self.settings.autoscale_stop_timeout_s + 15)
