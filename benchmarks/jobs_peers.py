"""The jobs scenario's worker processes and the RabbitMQ calls made around them.

``PeerWorker`` starts one system's worker (liftline, Celery or Dramatiq) in a session
of its own, its output appended to a log file; ``check_alive`` raises with the log's
tail once it has exited, and ``stop`` sends SIGTERM, then SIGKILL to its process group
if it has not exited in time. ``WorkerCpu`` measures the CPU of the run's processes and
counts the worker's whole process tree (Dramatiq forks its workers) as one.
``wait_consuming`` returns once the worker consumes its queue and raises if it exits
first or takes longer than ``WORKER_READY_S``. ``consumer_prefetch`` reads the prefetch
RabbitMQ applies to the queue's consumers, or ``None`` when the management API cannot
say. ``delete`` removes a trial's queues and exchanges; it never raises for a failed
delete, and it reports a failed connection instead of raising.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from benchmarks.context import Context
from benchmarks.env import REPO, CpuMeter, cpu_seconds
from benchmarks.progress import Deadline, say

CONCURRENCY = 8  # handler threads of each system's one worker process
WORKER_READY_S = 60.0


# -- processes -----------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (Dramatiq forks its worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class PeerWorker:
    """A worker process of one of the three systems, in a session of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"jobs-worker-{name}.log"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid, *_descendants(self.pid)]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} worker exited with code {self.proc.returncode}:\n"
                               f"{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (each system's graceful stop); SIGKILL to its process group after
        ``timeout_s``. Returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name} worker {self.pid} ignored SIGTERM for {timeout_s:.0f}s; "
                    "SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


class WorkerCpu:
    """CpuMeter over this run's processes, the worker's whole process tree as one."""

    def __init__(self, ctx: Context, worker: PeerWorker) -> None:
        self.worker = worker
        self.meter = CpuMeter(ctx.pids())
        self._tree0: dict[int, float] = {}

    def start(self) -> None:
        self.meter.start()
        self._tree0 = {p: cpu_seconds(p) or 0.0 for p in self.worker.pids()}

    def stop(self) -> dict[str, Any]:
        tree1 = {p: cpu_seconds(p) for p in self.worker.pids()}
        row = self.meter.stop()
        used = sum((now or 0.0) - self._tree0.get(p, 0.0) for p, now in tree1.items()
                   if now is not None)
        worker = used / row["wall_s"]
        row["worker"] = round(worker, 2)
        row["others"] = round(max(0.0, row["others"] - worker), 2)
        return row


# -- RabbitMQ helpers ----------------------------------------------------------
def _consumers(amqp_url: str, queue: str) -> int:
    """Consumers of ``queue`` (0 when it does not exist yet)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn.close()


def wait_consuming(amqp_url: str, queue: str, worker: PeerWorker) -> float:
    began = time.monotonic()
    deadline = Deadline(WORKER_READY_S)
    while not deadline.passed():
        worker.check_alive()
        if _consumers(amqp_url, queue) > 0:
            return time.monotonic() - began
        time.sleep(0.1)
    raise RuntimeError(f"{worker.name} worker did not consume {queue} within "
                       f"{WORKER_READY_S:.0f}s:\n{worker.log_tail()}")


def consumer_prefetch(management_url: str | None, queue: str) -> list[int] | None:
    """The prefetch_count of every consumer of ``queue`` as RabbitMQ applies it (the
    management API lists consumers after its stats interval, 5 s by default)."""
    if not management_url:
        return None
    from liftline.queue.management import management_get

    try:
        consumers = management_get(management_url, "/api/consumers") or []
    except Exception:  # noqa: BLE001 - a missing figure must not end the trial
        return None
    found = [int(c.get("prefetch_count", 0)) for c in consumers
             if isinstance(c, dict) and c.get("queue", {}).get("name") == queue]
    return sorted(found) or None


def delete(amqp_url: str, queues: list[str], exchanges: list[str]) -> None:
    try:
        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except (pika.exceptions.AMQPError, OSError) as exc:
        say(f"jobs cleanup: RabbitMQ: {exc!r}")
        return
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = conn.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                    channel.close()
                except pika.exceptions.AMQPError:
                    pass
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn.close()
