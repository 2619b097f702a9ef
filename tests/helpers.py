"""Small helpers shared by the test layers (import as ``from helpers import …``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

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
