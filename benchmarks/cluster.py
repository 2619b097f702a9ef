"""One liftline cluster per scenario: settings, worker processes, watermarks, cleanup."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import pika
import redis

from benchmarks.env import REPO, memory_kb
from benchmarks.progress import Deadline, say
from liftline.cluster.registry import live_members
from liftline.errors import LiftlineError, Timeout
from liftline.producer import WriteFuture
from liftline.producer.futures import WriteFutures
from liftline.queue.batch import Batch
from liftline.settings import Settings
from liftline.store.keys import Keys

PARTITIONS = 16


def settings_for(amqp_url: str, redis_url: str, cluster: str) -> Settings:
    return Settings.from_env({}, amqp_url=amqp_url, redis_url=redis_url, cluster=cluster,
                             partitions=PARTITIONS)


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)


def cleanup(settings: Settings) -> None:
    """Delete the cluster's streams, exchange and Redis keys (best effort)."""
    from liftline.queue.topology import Names

    names = Names(settings.cluster)
    try:
        conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            channel = conn.channel()
            for p in range(settings.partitions):
                channel.queue_delete(names.stream(p))
            channel.exchange_delete(names.exchange)
        finally:
            conn.close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        say(f"cleanup of {settings.cluster}: RabbitMQ: {exc!r}")
    client = redis_client(settings)
    try:
        for pattern in Keys(settings.cluster).patterns:
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
    except redis.RedisError as exc:
        say(f"cleanup of {settings.cluster}: Redis: {exc!r}")
    finally:
        client.close()


def worker_env(settings: Settings) -> dict[str, str]:
    env = settings.child_env()
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    return env


class WorkerProcess:
    """One ``python -m liftline worker`` in a session of its own, its output in a log file."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.keys = Keys(settings.cluster)
        self.log_path = log_dir / f"worker-{settings.cluster}.log"
        argv = [sys.executable, "-m", "liftline", "worker", "-v"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, env=worker_env(settings), cwd=REPO,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {self.proc.returncode}:\n"
                               f"{self.log_tail()}")

    def member(self, client: redis.Redis) -> dict[str, Any] | None:
        """This worker's live member record (with its per-partition report), or None."""
        for record in live_members(client, self.keys).values():
            if record["pid"] == self.pid:
                return record
        return None

    def wait_registered(self, client: redis.Redis, timeout_s: float = 60.0) -> float:
        """Block until the worker's member record is in Redis; returns that moment."""
        deadline = Deadline(timeout_s)
        while not deadline.passed():
            self._check_alive()
            for raw in client.smembers(self.keys.members):
                pid = client.hget(self.keys.member(raw.decode()), "pid")
                if pid is not None and int(pid) == self.pid:
                    return time.monotonic()
            time.sleep(0.01)
        raise RuntimeError(f"worker did not register within {timeout_s:.0f}s:\n{self.log_tail()}")

    def wait_serving(self, client: redis.Redis, timeout_s: float = 60.0) -> None:
        """Block until the worker reports every partition (it has taken them all)."""
        deadline = Deadline(timeout_s)
        while not deadline.passed():
            self._check_alive()
            record = self.member(client)
            if record and len(record["partitions"]) >= self.settings.partitions:
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker did not take its partitions within {timeout_s:.0f}s:\n"
                           f"{self.log_tail()}")

    def memory(self) -> dict[str, int]:
        return memory_kb(self.pid)

    def stop(self, timeout_s: float = 60.0) -> float:
        """SIGTERM (graceful: flush, deregister, exit 0), SIGKILL after ``timeout_s``.

        Returns how long the graceful stop took; the exit code is in :attr:`exit_code`.
        """
        began = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"worker {self.pid} ignored SIGTERM for {timeout_s:.0f}s; SIGKILL")
                self.proc.kill()
                self.proc.wait(10)
        self.exit_code = self.proc.returncode
        return time.monotonic() - began


class _Share:
    """The writes one submit_many call sent to one partition, as the Tracker sees them."""

    __slots__ = ("batches",)

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def done(self) -> bool:
        return all(b.done for b in self.batches)

    def exception(self, timeout: float | None) -> LiftlineError | None:
        for batch in self.batches:
            if not batch.wait_done(timeout):
                return Timeout("not confirmed in time")
        return next((b.error for b in self.batches if b.error is not None), None)


class Tracker:
    """Futures of one producer that are not settled yet, and what was confirmed.

    One queue per partition: a partition's batches are published, and confirmed, in
    order, so the settled futures are always at the head of their queue. :meth:`add`
    (one write's future) and :meth:`add_many` (a submit_many call's) run on the
    submitting thread; :meth:`poll` on any other (or the same) thread; a deque's append
    and popleft are thread-safe. Each entry is (future, writes, last seq).
    """

    def __init__(self, partitions: int = PARTITIONS) -> None:
        self.pending: list[deque[tuple[Any, int, int]]] = [deque() for _ in range(partitions)]
        self.submitted = 0
        self.confirmed = 0
        self.failed = 0
        self.first_error: str = ""
        self.submitted_seq = [0] * partitions
        self.confirmed_seq = [0] * partitions
        self._lock = threading.Lock()

    def add(self, future: WriteFuture) -> None:
        partition, _, seq = future.ticket
        self.pending[partition].append((future, 1, seq))
        self.submitted_seq[partition] = seq
        self.submitted += 1

    def add_many(self, futures: WriteFutures) -> None:
        for share in futures.shares():
            last = share.first_seq + share.writes - 1
            self.pending[share.partition].append((_Share(share.batches), share.writes, last))
            self.submitted_seq[share.partition] = last
        self.submitted += len(futures)

    def poll(self) -> int:
        """Settle the done futures at the heads; returns how many are still pending."""
        left = 0
        with self._lock:
            for partition, pending in enumerate(self.pending):
                last = 0
                while pending:
                    future, count, seq = pending[0]
                    if not future.done():
                        break
                    pending.popleft()
                    error = future.exception(0)
                    if error is None:
                        self.confirmed += count
                        last = seq
                    else:
                        self.failed += count
                        if not self.first_error:
                            self.first_error = f"{type(error).__name__}: {error}"
                if last > self.confirmed_seq[partition]:
                    self.confirmed_seq[partition] = last
                left += len(pending)
        return left

    def wait_all(self, deadline: Deadline) -> bool:
        """Wait until every added future is settled; False if the deadline came first."""
        while self.poll():
            if deadline.passed():
                return False
            head = next((q[0][0] for q in self.pending if q), None)
            if head is not None:
                head.exception(min(0.5, deadline.left()))
        return True


def watermarks(client: redis.Redis, settings: Settings, producer_id: str) -> list[int]:
    """The producer's flushed watermark (highest seq persisted) for every partition."""
    keys = Keys(settings.cluster)
    pipe = client.pipeline(transaction=False)
    for p in range(settings.partitions):
        pipe.hget(keys.watermarks(p), producer_id)
    return [int(v) if v is not None else 0 for v in pipe.execute()]


def flushed_count(marks: list[int], wanted: list[int]) -> int:
    """How many of the wanted writes (seq 1..wanted[p] per partition) the marks cover."""
    return sum(min(m, w) for m, w in zip(marks, wanted, strict=True))


def dead_letters(client: redis.Redis, settings: Settings) -> int:
    """How many dead letters the cluster's partitions recorded in Redis."""
    keys = Keys(settings.cluster)
    pipe = client.pipeline(transaction=False)
    for p in range(settings.partitions):
        pipe.xlen(keys.dead(p))
    return sum(int(n) for n in pipe.execute())


def slowlog_reset(client: redis.Redis) -> None:
    try:
        client.slowlog_reset()
    except redis.RedisError:
        pass


def slowlog_summary(client: redis.Redis, top: int = 5) -> dict[str, Any]:
    """Commands that ran longer than Redis' slowlog threshold (10 ms by default) since the
    last reset: how many, the longest, and the longest few (command, args, duration)."""
    try:
        threshold_us = int(client.config_get("slowlog-log-slower-than").get(
            "slowlog-log-slower-than", 10_000))
        entries = client.slowlog_get(128)
    except redis.RedisError as exc:
        return {"error": repr(exc)}
    rows = []
    for entry in entries:
        command = entry.get("command", b"")
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        words = str(command).split()
        more = re.search(r"\((\d+) more arguments\)", str(command))
        # Redis keeps at most 32 arguments of an entry and counts the rest.
        args = len(words) - 3 + int(more.group(1)) if more else len(words)
        rows.append({"ms": round(int(entry.get("duration", 0)) / 1000, 1),
                     "command": words[0] if words else "?", "args": args})
    rows.sort(key=lambda r: r["ms"], reverse=True)
    return {"threshold_ms": threshold_us / 1000, "count": len(rows),
            "total_ms": round(sum(r["ms"] for r in rows), 1), "longest": rows[:top]}
