"""`liftline ingest` as a child process: start it, wait until it is ready, stop it.

Used by `liftline up`, the tests and the benchmark. Only the process started
here is ever signalled, by PID (uvicorn's own worker processes end with it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from liftline.errors import ServerError
from liftline.procs import spawn, terminate
from liftline.settings import Settings


class IngestProcess:
    """One ``python -m liftline ingest`` with its output in ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, *, port: int | None = None,
                 processes: int = 1, app: str | None = None, cwd: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.port = settings.ingest_port if port is None else port
        self.host = settings.ingest_host
        self.log_path = log_path
        self.processes = processes
        self.app = app
        self.cwd = cwd
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> IngestProcess:
        env = self.settings.child_env()
        env.update(self.extra_env)
        argv = [sys.executable, "-m", "liftline", "ingest", "-v", "--port", str(self.port),
                "--processes", str(self.processes)]
        if self.app:
            argv += ["--app", self.app]
        self.proc = spawn(argv, env=env, log_path=self.log_path, cwd=self.cwd)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        """True when /readyz answers 200 (RabbitMQ connected, not blocked)."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                return answer.status == 200 and json.load(answer).get("ready") is True
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until ready; ServerError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = None if self.proc is None else self.proc.returncode
                raise ServerError(f"ingest exited with {code}; see {self.log_path}:\n"
                                  f"{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ServerError(f"ingest not ready within {timeout_s:.0f}s; see {self.log_path}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (uvicorn closes connections, the publisher flushes), SIGKILL after timeout."""
        return None if self.proc is None else terminate(self.proc, timeout_s)
