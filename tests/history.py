"""A history of acknowledged writes and a checker, in the spirit of Jepsen's total-queue.

Every write appends a unique id to one of a few list keys. After the run, the
final lists say exactly which writes took effect and how often, so

    lost       = acknowledged − applied       must be empty
    duplicated = ids applied more than once  must be empty
    unexpected = applied − attempted          must be empty

(writes that failed or were never confirmed may or may not be applied).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from liftline import Producer
from liftline.errors import LiftlineError
from liftline.tickets import Ticket

LISTS = 64
CAP = 1_000_000  # never trim: the lists are the evidence


@dataclass
class History:
    attempted: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    tickets: list[Ticket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Verdict:
    lost: set[int]
    duplicated: set[int]
    unexpected: set[int]
    applied: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)


def key_of(write_id: int) -> str:
    return f"h:{write_id % LISTS}"


def check(history: History, state: dict[str, Any]) -> Verdict:
    """Compare the history with the final values of the list keys."""
    seen: Counter[int] = Counter()
    for key, value in state.items():
        if key.startswith("h:"):
            seen.update(value)
    applied = set(seen)
    return Verdict(
        lost=history.acked - applied,
        duplicated={i for i, n in seen.items() if n > 1},
        unexpected=applied - history.attempted,
        applied=sum(seen.values()),
    )


class SteadyLoad:
    """Threads appending unique ids at a bounded rate until stopped (or a hard cap)."""

    def __init__(self, producer: Producer, history: History, *, threads: int = 3,
                 rate_per_thread: float = 600.0, max_writes: int = 200_000,
                 max_seconds: float = 240.0) -> None:
        self.producer = producer
        self.history = history
        self.rate = rate_per_thread
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._next = iter(range(1, 10**9))
        self._ids_lock = threading.Lock()
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def count(self) -> int:
        with self.history.lock:
            return len(self.history.acked)

    def _run(self) -> None:
        started = time.monotonic()
        interval = 1.0 / self.rate
        pending = []
        try:
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
                # Submit a small burst, then settle it: bounded in flight, paced overall.
                burst_started = time.monotonic()
                for _ in range(20):
                    with self._ids_lock:
                        write_id = next(self._next)
                    if write_id > self.max_writes:
                        return
                    with self.history.lock:
                        self.history.attempted.add(write_id)
                    pending.append((write_id, self.producer.submit(
                        "append", key_of(write_id), write_id, CAP)))
                self._settle(pending)
                pending = []
                spare = 20 * interval - (time.monotonic() - burst_started)
                if spare > 0:
                    self._stop.wait(spare)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            self._settle(pending)

    def _settle(self, pending: list[tuple[int, Any]]) -> None:
        for write_id, fut in pending:
            try:
                ticket = fut.result(60)
            except LiftlineError:
                with self.history.lock:
                    self.history.failed.add(write_id)
                continue
            with self.history.lock:
                self.history.acked.add(write_id)
                self.history.tickets.append(ticket)
