"""Small helpers shared by the test layers (import as ``from helpers import …``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from liftline.servers import rabbitmq_available, redis_available

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.05,
    message: str = "",
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises AssertionError (with ``message`` and the last value seen) if that
    does not happen within ``timeout_s``. The predicate is always called at
    least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = message or getattr(predicate, "__name__", "condition")
            raise AssertionError(
                f"timed out after {timeout_s:.1f}s waiting for {detail} (last value: {value!r})"
            )
        time.sleep(min(interval_s, remaining))


def missing_local_binaries() -> str | None:
    """Why :class:`~liftline.servers.LocalServers` cannot run here, or None if it can."""
    missing = [
        name
        for name, present in (
            ("RabbitMQ (/usr/lib/rabbitmq/bin/rabbitmq-server)", rabbitmq_available()),
            ("redis-server", redis_available()),
        )
        if not present
    ]
    return f"not installed: {', '.join(missing)}" if missing else None


def run_liftline(args: list[str], *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = 60,
                 check: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m liftline ARGS`` as a user runs it. Whatever it exits with, no
    Python traceback may reach its output (the CLI prints one line instead)."""
    result = subprocess.run([sys.executable, "-m", "liftline", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=timeout)
    shown = f"liftline {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    if check:
        assert result.returncode == 0, shown
    return result


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any LIFTLINE_* variable (plus ``extra``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTLINE_")}
    env.update(extra or {})
    return env


class Up:
    """A running `liftline up` whose output lines are collected."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liftline", "up", *args], cwd=cwd, env=env or clean_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))

    def output(self) -> str:
        while not self._q.empty():
            self.lines.append(self._q.get())
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout_s: float) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None or text in self.output(), self.output()
            return text in self.output()

        wait_until(seen, timeout_s, interval_s=0.1, message=f"{text!r} from liftline up")

    def stop(self, timeout_s: float = 90) -> int:
        """SIGTERM (the stack stops what it started), then its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def http_write_and_read(port: int, write: Mapping[str, Any]) -> Any:
    """POST ``write`` to the ingest service on ``port`` (a 202 expected) and read its key
    back with ``after`` its ticket (read-your-writes); returns the value read."""
    posted = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/writes", method="POST", data=json.dumps(write).encode(),
        headers={"Content-Type": "application/json"}), timeout=10)
    assert posted.status == 202
    ticket = json.load(posted)["ticket"]
    read = urllib.request.urlopen(
        f"http://127.0.0.1:{port}/v1/keys/{write['key']}?after={ticket}", timeout=10)
    return json.load(read)["value"]
