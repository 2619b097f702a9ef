"""Optional py-spy sampling of a measured phase (``--profile``), summarized as text.

py-spy is not a dependency: ``pip install py-spy`` into the venv to use it. The
samples are taken with ``--nonblocking`` (the target is never paused) and
``--idle`` (wall-clock: time spent waiting shows up as well), and the
summary lists where the process spent its time: by the innermost liftline (or
pika, redis, msgpack) frame, and by function including callees.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.progress import say

TOP = 30


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(enabled: bool, pid: int, name: str, out_dir: Path,
             rate_hz: int = 250) -> Iterator[None]:
    """Sample ``pid`` while the block runs; write ``out_dir/profile-<name>.txt``."""
    binary = py_spy() if enabled else None
    if binary is None:
        if enabled:
            say("--profile: py-spy not found (pip install py-spy); not profiling")
        yield
        return
    with tempfile.TemporaryDirectory(prefix="liftline-bench-prof-") as tmp:
        raw = Path(tmp) / "raw.txt"
        log = Path(tmp) / "py-spy.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [binary, "record", "--pid", str(pid), "--rate", str(rate_hz), "--format", "raw",
                 "--output", str(raw), "--nonblocking", "--threads", "--idle"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        time.sleep(0.3)  # let it attach
        try:
            yield
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"profile-{name}.txt"
            if raw.exists():
                target.write_text(summarize(raw.read_text(errors="replace"), name, pid, rate_hz))
                say(f"profile of {name} (pid {pid}) written to {target}")
            else:
                say(f"py-spy wrote nothing for {name}: {log.read_text(errors='replace')[-500:]}")


def _short(frame: str, line: bool = False) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    func, _, where = frame.partition(" (")
    path, _, number = where.rstrip(")").rpartition(":")
    if not path:
        path, number = number, ""
    for marker in ("/site-packages/", "/main/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path}:{number})" if line and number else f"{func} ({path})"


def summarize(raw: str, name: str, pid: int, rate_hz: int) -> str:
    """Self and inclusive sample shares per function, per thread, from collapsed stacks."""
    by_thread: collections.Counter[str] = collections.Counter()
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    line_count: collections.Counter[str] = collections.Counter()
    thread_lines: dict[str, collections.Counter[str]] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        body = [f for f in frames if not f.startswith(("thread", "process"))]
        if not body:
            continue
        total += count
        by_thread[thread] += count
        self_count[_short(body[-1])] += count
        thread_lines.setdefault(thread, collections.Counter())[_short(body[-1], line=True)] += count
        line_count[_short(body[-1], line=True)] += count
        for frame in {_short(f) for f in body}:
            incl_count[frame] += count
    lines = [f"py-spy profile: {name}, pid {pid}, {total} samples at {rate_hz} Hz, idle "
             "samples included (wall-clock time: waiting in poll/recv/lock shows up too)", ""]
    lines.append("Samples per thread:")
    for thread, n in by_thread.most_common():
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {thread}")
    for thread, n in by_thread.most_common():
        lines += ["", f"{thread}: top lines by self time (share of this thread's samples)"]
        for frame, m in thread_lines[thread].most_common(8):
            lines.append(f"  {100 * m / max(n, 1):5.1f}%  {frame}")
    lines += ["", f"Top {TOP} by self time (innermost frame), all threads:"]
    for frame, n in self_count.most_common(TOP):
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    lines += ["", f"Top {TOP} lines by self time, all threads:"]
    for frame, n in line_count.most_common(TOP):
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    lines += ["", f"Top {TOP} by inclusive time, all threads:"]
    for frame, n in incl_count.most_common(TOP):
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines) + "\n"
