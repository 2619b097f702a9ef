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
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Self

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
    # Tickets of the writes whose futures failed (their producer was told).
    failed_tickets: list[Ticket] = field(default_factory=list)
    # Counters (incr 1): acknowledged and attempted increments per key.
    incr_acked: Counter[str] = field(default_factory=Counter)
    incr_attempted: Counter[str] = field(default_factory=Counter)
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


class Threaded:
    """A load run by ``self._threads`` (each running ``self._run`` until ``self._stop``
    is set): a context manager that starts them and stops and joins them."""

    _threads: list[threading.Thread]
    _stop: threading.Event

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(180)


class SteadyLoad(Threaded):
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


def check_counters(history: History, state: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """Counters outside [acknowledged, attempted] increments: key -> (low, value, high).

    Below the acknowledged count an acknowledged increment was lost; above the
    attempted count one was applied twice. Empty when all is well."""
    out = {}
    for key, attempted in history.incr_attempted.items():
        value = state.get(key, 0)
        if not history.incr_acked[key] <= value <= attempted:
            out[key] = (history.incr_acked[key], value, attempted)
    return out


class PipelinedLoad(Threaded):
    """Writes at a steady rate with up to ``window`` writes awaiting confirms, as a
    producer that pipelines its batches does: many batches are in flight whenever a
    broker node fails. Mixed: every write appends its unique id to a history list,
    and every ``incr_every``-th one also increments a counter."""

    def __init__(self, producer: Producer, history: History, *, rate: float = 2000.0,
                 window: int = 2000, incr_every: int = 5, max_writes: int = 2_000_000,
                 max_seconds: float = 400.0, ids: range = range(1, 10**9)) -> None:
        self.producer = producer
        self.history = history
        self.rate = rate
        self.window = window
        self.incr_every = incr_every
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self._ids = iter(ids)
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self.acked_at: deque[float] = deque(maxlen=50_000)  # monotonic time of each ack
        self._threads = [threading.Thread(target=self._run, daemon=True)]

    def acked_since(self, moment: float) -> int:
        return sum(1 for t in list(self.acked_at) if t > moment)

    def _run(self) -> None:
        started = time.monotonic()
        sent = 0
        window: deque[tuple[int, Any, Any]] = deque()
        try:
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds \
                    and sent < self.max_writes:
                due = int((time.monotonic() - started) * self.rate) - sent
                for _ in range(min(due, self.window - len(window))):
                    write_id = next(self._ids)
                    counter = f"c:{write_id % 16}" if write_id % self.incr_every == 0 else None
                    with self.history.lock:
                        self.history.attempted.add(write_id)
                        if counter:
                            self.history.incr_attempted[counter] += 1
                    future = self.producer.submit("append", key_of(write_id), write_id, CAP)
                    extra = self.producer.submit("incr", counter, 1) if counter else None
                    window.append((write_id, future, (counter, extra)))
                    sent += 1
                while window and (window[0][1].done() or len(window) >= self.window):
                    self._settle(*window.popleft())
                self._stop.wait(0.005)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            while window:
                self._settle(*window.popleft())

    def _settle(self, write_id: int, future: Any, extra: tuple[str | None, Any]) -> None:
        counter, incr = extra
        try:
            ticket = future.result(120)
        except LiftlineError:
            with self.history.lock:
                self.history.failed.add(write_id)
                self.history.failed_tickets.append(future.ticket)
            ticket = None
        if ticket is not None:
            with self.history.lock:
                self.history.acked.add(write_id)
                self.history.tickets.append(ticket)
            self.acked_at.append(time.monotonic())
        if incr is not None:
            try:
                incr_ticket = incr.result(120)
                with self.history.lock:
                    self.history.incr_acked[counter or ""] += 1
                    self.history.tickets.append(incr_ticket)
            except LiftlineError:
                with self.history.lock:
                    self.history.failed_tickets.append(incr.ticket)


class HttpLoad(Threaded):
    """Threads POSTing one history append per request to the HTTP service, paced, until
    stopped (or a hard cap). 202 is acknowledged (with its ticket), 503 refused (the
    service told the caller); any other status or a client error is kept in ``errors``."""

    def __init__(self, http: Any, history: History, *, threads: int = 2,
                 rate_per_thread: float = 150.0, max_requests: int = 100_000,
                 max_seconds: float = 400.0, ids: range = range(1, 10**9)) -> None:
        self.http = http
        self.history = history
        self.rate = rate_per_thread
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self._ids = iter(ids)
        self._ids_lock = threading.Lock()
        self._stop = threading.Event()
        self.errors: list[Any] = []
        self.refused = 0
        self.tickets: list[Ticket] = []
        self.acked_at: deque[float] = deque(maxlen=50_000)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def acked_since(self, moment: float) -> int:
        return sum(1 for t in list(self.acked_at) if t > moment)

    def _run(self) -> None:
        started = time.monotonic()
        done = 0
        while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
            with self._ids_lock:
                write_id = next(self._ids)
                if len(self.tickets) + self.refused >= self.max_requests:
                    return
            with self.history.lock:
                self.history.attempted.add(write_id)
            body = {"op": "append", "key": key_of(write_id), "value": write_id, "cap": CAP}
            try:
                answer = self.http.post("/v1/writes", body)
            except BaseException as exc:  # noqa: BLE001 - a write lost without a word
                self.errors.append((write_id, repr(exc)))
                return
            if answer.status == 202:
                ticket = Ticket.parse(answer.body["ticket"])
                with self.history.lock:
                    self.history.acked.add(write_id)
                    self.history.tickets.append(ticket)
                    self.tickets.append(ticket)
                self.acked_at.append(time.monotonic())
            elif answer.status == 503 and "retry-after" in answer.headers:
                with self.history.lock:
                    self.history.failed.add(write_id)
                    self.refused += 1
                self._stop.wait(0.05)  # as a client honouring Retry-After, only sooner
            else:
                self.errors.append((write_id, answer.status, answer.body))
            done += 1
            ahead = done / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self._stop.wait(ahead)
