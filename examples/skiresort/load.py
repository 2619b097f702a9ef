"""The load of the course's clients: lift rides posted in two phases, with retries.

Phase 1: ``phase1_threads`` threads (32) post ``phase1_rides`` rides each (1,000).
Phase 2 starts when the first of them is done (as the course has it): up to
``threads`` threads (200) share the rest. Each thread keeps one HTTP/1.1
connection open (``http.client``), so the client is not what limits the rate.
A request that fails with a 5xx or a connection error is sent again, up to
``retries`` (5) times, after a short backoff; a 4xx is a failure at once.

Every exchange is recorded (for the CSV), every ride's outcome too; the rides
that got 201 are folded into what the server must hold afterwards (see
:mod:`examples.skiresort.readback`), and the newest ``Liftline-Ticket`` per
partition and producer is kept for reading back with ``after``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from examples.skiresort import lift_vertical
from examples.skiresort.api import TICKET_HEADER

RETRYABLE = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class Ride:
    resort: int
    season: str
    day: int
    skier: int
    time: int
    lift: int
    wait: int | None

    @property
    def path(self) -> str:
        return (f"/skiers/{self.resort}/seasons/{self.season}/days/{self.day}"
                f"/skiers/{self.skier}")

    def body(self) -> bytes:
        ride = {"time": self.time, "liftID": self.lift}
        if self.wait is not None:
            ride["waitTime"] = self.wait
        return json.dumps(ride).encode()


@dataclass(frozen=True)
class Plan:
    """What to send: ``total`` rides, drawn from ``seed``, and how (phases, threads)."""

    base_url: str
    total: int = 200_000
    threads: int = 200
    phase1_threads: int = 32
    phase1_rides: int = 1000
    retries: int = 5
    timeout_s: float = 30.0
    skiers: int = 100_000
    resorts: int = 10
    lifts: int = 40
    season: str = "2025"
    day: int = 1
    wait_time: bool = True
    seed: int = 6650
    drop: int = 0  # negative control: every len/drop-th ride counted as 201, never sent

    def rides(self) -> list[Ride]:
        rng = random.Random(self.seed)
        return [Ride(rng.randint(1, self.resorts), self.season, self.day,
                     rng.randint(1, self.skiers), rng.randint(1, 360),
                     rng.randint(1, self.lifts), rng.randint(0, 10) if self.wait_time else None)
                for _ in range(self.total)]


@dataclass
class Exchange:
    """One HTTP request and its answer (or the error instead of one)."""

    start: float  # time.time()
    latency_ms: float
    status: int | str  # the HTTP status, or the error's name
    ride: int
    attempt: int
    phase: int


@dataclass
class Outcome:
    """What became of one ride: its last answer, end to end over its attempts."""

    ride: int
    start: float
    latency_ms: float
    status: int | str
    attempts: int
    phase: int
    ticket: str | None


@dataclass
class Run:
    plan: Plan
    started: float = 0.0
    phase2_started: float = 0.0
    ended: float = 0.0
    exchanges: list[Exchange] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    def acknowledged(self) -> list[int]:
        """The rides that got 201 (and those the negative control pretends did)."""
        return [o.ride for o in self.outcomes if o.status == 201] + self.dropped


class Pool:
    """Ride numbers handed out once each; thread-safe."""

    def __init__(self, indexes: list[int]) -> None:
        self._next = iter(indexes)
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            return next(self._next, None)


class Connection:
    """One keep-alive connection of one thread; reopened after an error."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout_s = timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            answer = self.conn.getresponse()
            data = answer.read()
        except BaseException:
            self.close()
            raise
        if answer.getheader("connection", "").lower() == "close":
            self.close()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def send(conn: Connection, ride: Ride, index: int, phase: int, retries: int,
         log: list[Exchange]) -> Outcome:
    """Post one ride, again after a 5xx or a connection error (``retries`` times at most)."""
    began = time.time()
    status: int | str = "none"
    ticket = None
    for attempt in range(1, retries + 2):
        t0 = time.perf_counter()
        start = time.time()
        try:
            status, headers, _ = conn.request("POST", ride.path, ride.body())
            ticket = headers.get(TICKET_HEADER.lower())
        except RETRYABLE as exc:
            status = type(exc).__name__
        log.append(Exchange(start, (time.perf_counter() - t0) * 1000, status, index, attempt,
                            phase))
        if isinstance(status, int) and status < 500:
            break
        if attempt <= retries:
            time.sleep(min(1.0, 0.01 * 2 ** (attempt - 1)))
    return Outcome(index, began, (time.time() - began) * 1000, status, attempt, phase, ticket)


def run(plan: Plan, rides: list[Ride], say: Callable[[str], None] = print) -> Run:
    """Send every ride as :class:`Plan` says; returns the record of it all."""
    result = Run(plan)
    indexes = list(range(len(rides)))
    if plan.drop:
        result.dropped = indexes[plan.drop - 1::plan.drop]
        dropped = set(result.dropped)
        indexes = [i for i in indexes if i not in dropped]
    pool = Pool(indexes)
    first_done = threading.Event()
    lock = threading.Lock()

    def worker(phase: int, quota: int | None) -> None:
        conn = Connection(plan.base_url, plan.timeout_s)
        log: list[Exchange] = []
        mine: list[Outcome] = []
        try:
            while quota is None or len(mine) < quota:
                index = pool.take()
                if index is None:
                    break
                mine.append(send(conn, rides[index], index, phase, plan.retries, log))
        finally:
            conn.close()
            with lock:
                result.exchanges += log
                result.outcomes += mine
            first_done.set()

    phase1 = min(plan.phase1_threads, max(1, len(indexes) // max(1, plan.phase1_rides)))
    result.started = time.time()
    say(f"phase 1: {phase1} threads x {plan.phase1_rides} rides")
    started = [threading.Thread(target=worker, args=(1, plan.phase1_rides), daemon=True)
               for _ in range(phase1)]
    for t in started:
        t.start()
    rest = len(indexes) - phase1 * plan.phase1_rides
    if rest > 0:
        first_done.wait()
        result.phase2_started = time.time()
        threads = max(1, min(plan.threads, rest))
        say(f"phase 2: {threads} threads share the other {rest} rides")
        more = [threading.Thread(target=worker, args=(2, None), daemon=True)
                for _ in range(threads)]
        for t in more:
            t.start()
        started += more
    for t in started:
        t.join()
    result.ended = time.time()
    result.outcomes.sort(key=lambda o: o.ride)
    return result


def expected_vertical(rides: list[Ride], acknowledged: list[int]
                      ) -> tuple[dict[tuple[int, str, int, int], int],
                                 dict[tuple[int, str, int], set[int]]]:
    """The fold of the acknowledged rides: vertical per skier-day, skiers per resort-day."""
    vertical: dict[tuple[int, str, int, int], int] = {}
    skiers: dict[tuple[int, str, int], set[int]] = {}
    for index in acknowledged:
        r = rides[index]
        key = (r.resort, r.season, r.day, r.skier)
        vertical[key] = vertical.get(key, 0) + lift_vertical(r.lift)
        skiers.setdefault((r.resort, r.season, r.day), set()).add(r.skier)
    return vertical, skiers
