"""Processes of the local servers: spawn into a process group of their own,
signal only what we started, wait for it to be gone, read its log."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from liftline.errors import ServerError
from liftline.procs import spawn

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` names a process that still runs or still holds its resources.

    A zombie counts as gone once all its threads have exited: the leader of a
    multi-threaded process (beam.smp) turns zombie before its other threads
    finish dying, and until they do its sockets stay open.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    zombie = fields.get("State", "").strip().startswith("Z")
    return not (zombie and fields.get("Threads", "1").strip() == "1")


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def spawn_in_group(argv: list[str], env: dict[str, str] | None,
                   log_file: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group), output appended to log_file."""
    return spawn(argv, env=env, log_path=log_file, new_session=True)


def _ours(pid: int, proc: subprocess.Popen[bytes]) -> bool:
    """True if ``pid`` is alive and still in the process group ``proc`` leads.

    Guards against signalling a stranger that reused the PID of a dead member.
    """
    try:
        return pid_alive(pid) and os.getpgid(pid) == proc.pid
    except ProcessLookupError:
        return False


def _signal(proc: subprocess.Popen[bytes], members: Iterable[int], sig: signal.Signals) -> None:
    """Signal the group ``proc`` leads, or its listed members if the leader is gone."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        return
    for pid in members:
        if _ours(pid, proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _wait_gone(proc: subprocess.Popen[bytes], members: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None or any(_ours(pid, proc) for pid in members):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def end_group(proc: subprocess.Popen[bytes], members: list[int], timeout_s: float,
              name: str) -> None:
    """SIGTERM the process group, wait up to ``timeout_s``, then SIGKILL it."""
    _signal(proc, members, signal.SIGTERM)
    if _wait_gone(proc, members, timeout_s):
        return
    log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", name, proc.pid, timeout_s)
    kill_group(proc, members, name)


def kill_group(proc: subprocess.Popen[bytes], members: list[int], name: str) -> None:
    _signal(proc, members, signal.SIGKILL)
    if not _wait_gone(proc, members, 10.0):
        raise ServerError(f"{name} (pid {proc.pid}) survived SIGKILL")
