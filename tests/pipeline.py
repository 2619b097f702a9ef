"""Helpers for tests that run the write pipeline: worker processes, a fold model,
and waiting for the pipeline to drain. Import as ``from pipeline import …``."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from helpers import wait_until

from liftline import codec
from liftline.producer import Producer
from liftline.reads import OwnerReader
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.tickets import Ticket

REPO = Path(__file__).resolve().parents[1]


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment for a worker process: every setting that differs from its default."""
    env = settings.child_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + str(REPO / "tests")
    return env


class WorkerProcess:
    """A `liftline worker` subprocess; its log is kept for failure messages."""

    def __init__(self, settings: Settings, log_dir: Path, *, app: str | None = None,
                 args: tuple[str, ...] = (), launcher: tuple[str, ...] = ()) -> None:
        """``launcher`` goes before the command (``ip netns exec NS`` for another host)."""
        self.settings = settings
        self.log_path = log_dir / f"worker-{os.urandom(3).hex()}.log"
        argv = [*launcher, sys.executable, "-m", "liftline", "worker", "-v", *args]
        if app:
            argv += ["--app", app]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, env=worker_env(settings), stdout=out,
                                         stderr=subprocess.STDOUT, cwd=REPO)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_registered(self, client: redis.Redis, timeout_s: float = 30) -> None:
        keys = Keys(self.settings.cluster)

        def registered() -> bool:
            assert self.proc.poll() is None, f"worker exited early:\n{self.log()}"
            for member in client.smembers(keys.members):
                pid = client.hget(keys.member(member.decode()), "pid")
                if pid is not None and int(pid) == self.pid:
                    return True
            return False

        wait_until(registered, timeout_s, message="worker registration")

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def last_tickets(tickets: Iterable[Ticket]) -> dict[tuple[int, str], int]:
    """Highest seq per (partition, producer) among ``tickets``."""
    out: dict[tuple[int, str], int] = {}
    for t in tickets:
        k = (t.partition, t.producer_id)
        if t.seq > out.get(k, 0):
            out[k] = t.seq
    return out


def wait_flushed(client: redis.Redis, settings: Settings, tickets: Iterable[Ticket],
                 timeout_s: float = 60) -> None:
    """Wait until Redis' watermarks cover every ticket: all of them applied and flushed."""
    keys = Keys(settings.cluster)
    wanted = last_tickets(tickets)

    def covered() -> bool:
        for (partition, producer), seq in wanted.items():
            got = client.hget(keys.watermarks(partition), producer)
            if got is None or int(got) < seq:
                return False
        return True

    wait_until(covered, timeout_s, interval_s=0.1, message="all acknowledged writes flushed")


def newest_flush(client: redis.Redis, settings: Settings) -> float:
    """The latest ``flushed_at`` over the partitions (0 before any flush)."""
    keys = Keys(settings.cluster)
    stamps = [client.hget(keys.state(p), "flushed_at") for p in range(settings.partitions)]
    return max((float(s) for s in stamps if s), default=0.0)


def redis_state(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """Every key's value as flushed to Redis."""
    keys = Keys(settings.cluster)
    out: dict[str, Any] = {}
    for p in range(settings.partitions):
        for key, raw in client.hgetall(keys.data(p)).items():
            out[key.decode()] = codec.unpack(raw)[0]
    return out


def memory_state(settings: Settings, keys: list[str]) -> dict[str, Any]:
    """The owners' in-memory values of ``keys`` (absent keys left out)."""
    reader = OwnerReader(settings)
    try:
        results = reader.get_many(keys)
    finally:
        reader.close()
    return {k: r.value for k, r in results.items() if r.found}


class Model:
    """An independent fold of the ops, to compare the pipeline against."""

    def __init__(self, append_cap: int = 1000) -> None:
        self.values: dict[str, Any] = {}
        self.append_cap = append_cap

    def apply(self, op: str, key: str, value: Any = None, arg: Any = None) -> None:
        v = self.values
        if op == "set":
            v[key] = value
        elif op == "delete":
            v.pop(key, None)
        elif op == "incr":
            v[key] = v.get(key, 0) + value
        elif op == "merge":
            v[key] = {**v.get(key, {}), **value}
        elif op == "append":
            items = [*v.get(key, []), value]
            v[key] = items[-(arg or self.append_cap):]
        elif op == "setnx":
            v.setdefault(key, value)
        else:
            raise ValueError(op)


class Workers:
    """Starts worker processes for one test and always stops them afterwards."""

    def __init__(self, settings: Settings, client: redis.Redis, log_dir: Path) -> None:
        self.settings = settings
        self.client = client
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, *, app: str | None = None, wait: bool = True,
              args: tuple[str, ...] = ()) -> WorkerProcess:
        worker = WorkerProcess(self.settings, self.log_dir, app=app, args=args)
        self.started.append(worker)
        if wait:
            worker.wait_registered(self.client)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                try:
                    worker.terminate(30)
                except subprocess.TimeoutExpired:
                    worker.kill()


def mixed_load(producer: Producer, thread_no: int, count: int, model: Model,
               lock: threading.Lock, futures: list[Any]) -> None:
    """``count`` mixed writes; shared counters take commutative incrs only."""
    rng = random.Random(thread_no)
    mine = []
    for i in range(count):
        roll = rng.random()
        own = f"t{thread_no}:k{rng.randrange(2000)}"
        if roll < 0.45:
            key = f"shared:{rng.randrange(500)}"
            op, value, arg = "incr", rng.choice([1, 2, 5]), None
        elif roll < 0.60:
            op, key, value, arg = "set", own, {"n": i, "t": thread_no}, None
        elif roll < 0.70:
            op, key, value, arg = "incr", own + ":c", 1.5, None
        elif roll < 0.78:
            op, key, value, arg = "merge", own + ":m", {f"f{i % 7}": i}, None
        elif roll < 0.86:
            op, key, value, arg = "append", own + ":l", i, 5
        elif roll < 0.93:
            op, key, value, arg = "setnx", own + ":once", i, None
        else:
            op, key, value, arg = "delete", own, None, None
        fut = producer.submit(op, key, value, arg)
        mine.append((fut, op, key, value, arg))
    for fut, op, key, value, arg in mine:
        fut.result(60)  # only acknowledged writes enter the model
        with lock:
            model.apply(op, key, value, arg)
            futures.append(fut)


class PacedLoad:
    """Increments at up to ``rate`` writes/s in bursts of 1,000, bounded in count and time."""

    def __init__(self, producer: Producer, rate: int, max_writes: int = 3_000_000,
                 max_seconds: float = 120.0) -> None:
        self.producer = producer
        self.rate = rate
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.acked = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = 0.0
        self.ended = 0.0

    def __enter__(self) -> PacedLoad:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        sent = 0
        try:
            while not self._stop.is_set() and sent < self.max_writes \
                    and time.monotonic() - self.started < self.max_seconds:
                futures = [self.producer.submit("incr", f"load:{(sent + i) % 5000}", 1)
                           for i in range(1000)]
                sent += 1000
                for future in futures:
                    future.result(timeout=30)
                self.acked = sent
                ahead = sent / self.rate - (time.monotonic() - self.started)
                if ahead > 0:
                    self._stop.wait(ahead)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            self.ended = time.monotonic()

    def achieved(self) -> float:
        return self.acked / max(1e-9, (self.ended or time.monotonic()) - self.started)
