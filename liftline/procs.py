"""Child processes of liftline's own: start one with its output in a log file,
stop it gracefully (SIGTERM, then SIGKILL after a timeout).

Runtime code (``liftline up``'s workers, the ingest and autoscaler children, the
local worker pool) and the test servers in :mod:`liftline.servers` all start and
stop their children here. Only a process started here is ever signalled, by PID.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path


def spawn(argv: list[str], *, env: Mapping[str, str] | None, log_path: Path,
          cwd: Path | None = None, new_session: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdin closed and stdout and stderr appended to ``log_path``.

    ``new_session``: the child leads a process group of its own, so that the
    whole group (a server and its helpers) can be signalled together.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            argv, env=None if env is None else dict(env), cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """SIGTERM one child we started (its graceful stop), SIGKILL it after ``timeout_s``;
    returns its exit code. Does nothing to a child that already exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
