"""The liftline workers of the cluster scenario, the load they run under, and their state.

``Node`` runs ``python -m liftline worker -v`` with a log file of its own and every
setting that differs from the default passed as a ``LIFTLINE_*`` variable
(``node_env``). ``table`` reads from Redis which member is primary of each partition and
which members hold it. ``wait_settled`` waits until the given workers are exactly the
live members, every partition has its primary and min(R, N) holders, and that table has
stayed the same for two heartbeats; it raises if a worker exits, or, with the workers'
log tails, if that does not happen within the time limit. ``SteadyLoad`` writes at a
fixed pace from a thread of its own until halted, and keeps the error that ended it for
the scenario to raise. ``stop_all`` stops the workers still running, and
``partition_state`` reads a partition's epoch and flushed offset from Redis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.cluster import Tracker, WorkerProcess
from benchmarks.env import REPO
from benchmarks.progress import Deadline
from liftline.cluster.registry import live_members, owners_of
from liftline.producer import Producer
from liftline.settings import Settings
from liftline.store.keys import Keys

FAST = {"heartbeat_s": 0.5, "member_ttl_s": 2.0}  # failover and recovery membership timing
FAILOVER_LOAD_PER_S = 2_000  # SteadyLoad's pace during failover
SETTLE_LIMIT_S = 60.0


# -- workers with every setting ----------------------------------------------
def node_env(settings: Settings) -> dict[str, str]:
    """A worker's environment: every setting that differs from the default, as LIFTLINE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTLINE_")}
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if f.name in ("amqp_url", "redis_url") or value != getattr(defaults, f.name):
            env[f"LIFTLINE_{f.name.upper()}"] = str(value)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


class Node(WorkerProcess):
    """``python -m liftline worker -v`` with the scenario's settings and a log of its own."""

    def __init__(self, settings: Settings, log_dir: Path, tag: str) -> None:
        self.settings = settings
        self.keys = Keys(settings.cluster)
        self.log_path = log_dir / f"worker-{settings.cluster}-{tag}.log"
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "liftline", "worker", "-v"],
                                         env=node_env(settings), cwd=REPO,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.exit_code: int | None = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.exit_code = self.proc.returncode


def table(client: redis.Redis, settings: Settings) -> dict[int, dict[str, Any]]:
    """Per partition: the live primary (owners hash and its own report agree) and the
    reports of every member holding it."""
    keys = Keys(settings.cluster)
    members = live_members(client, keys)
    owners = owners_of(client, keys)
    out: dict[int, dict[str, Any]] = {}
    for p in range(settings.partitions):
        holders = {m: r["partitions"][p] for m, r in members.items() if p in r["partitions"]}
        owner = owners.get(p)
        primary = owner if owner in holders and holders[owner]["role"] == "primary" else None
        out[p] = {"primary": primary, "holders": holders}
    out[-1] = {"members": members}
    return out


def _shape(t: dict[int, dict[str, Any]], settings: Settings) -> tuple[Any, ...]:
    return tuple((t[p]["primary"], tuple(sorted(t[p]["holders"])))
                 for p in range(settings.partitions))


def wait_settled(client: redis.Redis, settings: Settings, nodes: list[Node],
                 timeout_s: float = SETTLE_LIMIT_S) -> dict[int, dict[str, Any]]:
    """Until ``nodes`` are the live members, every partition has its primary and
    min(R, N) holders, and the table stayed the same over two heartbeats."""
    deadline = Deadline(timeout_s)
    want = min(settings.replicas, len(nodes))
    pids = {n.pid for n in nodes}
    stable_since, last = 0.0, None
    while not deadline.passed():
        for node in nodes:
            node._check_alive()
        t = table(client, settings)
        members = t[-1]["members"]
        ok = ({m["pid"] for m in members.values()} == pids
              and all(t[p]["primary"] and len(t[p]["holders"]) == want
                      for p in range(settings.partitions)))
        shape = _shape(t, settings) if ok else None
        now = time.monotonic()
        if shape is None or shape != last:
            stable_since, last = now, shape
        elif now - stable_since >= 2 * settings.heartbeat_s + 0.1:
            return t
        time.sleep(0.1)
    raise RuntimeError(f"{len(nodes)} workers did not settle within {timeout_s:.0f}s:\n"
                       + "\n---\n".join(n.log_tail(8) for n in nodes))


class SteadyLoad(threading.Thread):
    """A paced producer (``per_s`` incr writes/s over 4,096 keys) until halted."""

    def __init__(self, settings: Settings, per_s: int) -> None:
        super().__init__(name="bench-steady-load", daemon=True)
        self.producer = Producer(settings)
        self.tracker = Tracker(settings.partitions)
        self.per_s = per_s
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            began, done = time.monotonic(), 0
            submit, add = self.producer.submit, self.tracker.add
            while not self.halt.is_set():
                due = int((time.monotonic() - began) * self.per_s) - done
                if due <= 0:
                    self.tracker.poll()
                    time.sleep(0.005)
                    continue
                for _ in range(min(due, 500)):
                    add(submit("incr", f"fo:{done % 4096}", 1))
                    done += 1
        except BaseException as exc:  # reported by the scenario
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.tracker.wait_all(Deadline(30))
        self.producer.close()


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc.poll() is None:
            node.stop(30)


def partition_state(client: redis.Redis, keys: Keys, partition: int) -> tuple[int, int]:
    """(epoch, flushed offset) of ``partition`` in Redis."""
    epoch, offset = client.hmget(keys.state(partition), ["epoch", "offset"])
    return int(epoch or 0), int(offset if offset is not None else -1)
