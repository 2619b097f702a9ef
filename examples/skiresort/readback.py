"""Read back what a load run wrote, and compare it with the fold of what got 201.

Two ways to know every acknowledged write is readable, both exact:

- ``after`` (default): for each partition and producer, the newest ticket any
  201 carried is awaited with ``?after=<ticket>`` (the owner answers once that
  write is applied: every earlier write of that producer to that partition is
  then applied too); then every skier's day vertical and every day's
  ``numSkiers`` are read from the owners (``consistency=primary``).
- ``stale``: the same tickets are awaited with ``consistency=stale&after=``,
  which answers once the write is persisted in Redis; then everything is read
  from Redis (``consistency=stale``): what survives the loss of every worker.

A server that sends no ``Liftline-Ticket`` (a course server) can only be read
after a wait (``settle_s``), which proves less.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from examples.skiresort.load import RETRYABLE, Connection, Ride, Run, expected_vertical
from liftline.tickets import Ticket

WAIT_MS = 60_000


@dataclass
class ReadBack:
    mode: str
    tickets_awaited: int = 0
    wait_s: float = 0.0
    read_s: float = 0.0
    skier_days: int = 0
    resort_days: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences and not self.errors


def newest_tickets(run: Run, rides: list[Ride]) -> dict[tuple[int, str], tuple[Ticket, Ride]]:
    """Per (partition, producer): the ticket with the highest seq, and the ride it came with."""
    newest: dict[tuple[int, str], tuple[Ticket, Ride]] = {}
    for outcome in run.outcomes:
        if outcome.status != 201 or not outcome.ticket:
            continue
        ticket = Ticket.parse(outcome.ticket)
        key = (ticket.partition, ticket.producer_id)
        if key not in newest or newest[key][0].seq < ticket.seq:
            newest[key] = (ticket, rides[outcome.ride])
    return newest


def read_back(run: Run, rides: list[Ride], mode: str = "after", threads: int = 32,
              settle_s: float = 30.0, say: Callable[[str], None] = print) -> ReadBack:
    """Compare the server's skier-day verticals and numSkiers with the run's fold."""
    result = ReadBack(mode)
    vertical, skiers = expected_vertical(rides, run.acknowledged())
    # Skiers whose every ride failed must read as absent.
    attempted = {(r.resort, r.season, r.day, r.skier) for r in rides}
    consistency = "stale" if mode == "stale" else "primary"
    began = time.time()
    newest = newest_tickets(run, rides)
    if mode in ("after", "stale") and newest:
        say(f"read-back: waiting for {len(newest)} tickets (the newest per partition and "
            f"producer) to be {'persisted' if mode == 'stale' else 'applied'}")
        jobs = [(f"{ride.path}?consistency={consistency}&after={ticket}&timeout_ms={WAIT_MS}",
                 None) for ticket, ride in newest.values()]
        for path, (status, _body) in _get_all(run.plan.base_url, jobs, threads):
            if status != 200:
                result.errors.append(f"GET {path}: {status}")
        result.tickets_awaited = len(newest)
    else:
        say(f"read-back: no tickets to wait for; reading after {settle_s:g} s")
        result.mode = "settle"
        time.sleep(settle_s)
    result.wait_s = time.time() - began
    began = time.time()
    day_jobs = [(f"/skiers/{r}/seasons/{s}/days/{d}/skiers/{k}?consistency={consistency}",
                 (r, s, d, k)) for (r, s, d, k) in sorted(attempted)]
    for path, (status, body), key in _get_all(run.plan.base_url, day_jobs, threads, keyed=True):
        want = vertical.get(key)
        got = body if status == 200 else None if status == 404 else f"HTTP {status}"
        if got != want:
            result.differences.append({"what": "vertical", "path": path.split("?")[0],
                                       "expected": want, "got": got})
    resort_days = sorted({(r, s, d) for (r, s, d, _k) in attempted})
    count_jobs = [(f"/resorts/{r}/seasons/{s}/day/{d}/skiers?consistency={consistency}",
                   (r, s, d)) for (r, s, d) in resort_days]
    for path, (status, body), key in _get_all(run.plan.base_url, count_jobs, threads,
                                              keyed=True):
        want = len(skiers.get(key, ()))
        got = body.get("numSkiers") if status == 200 and isinstance(body, dict) \
            else 0 if status == 404 else f"HTTP {status}"
        if got != want:
            result.differences.append({"what": "numSkiers", "path": path.split("?")[0],
                                       "expected": want, "got": got})
    result.read_s = time.time() - began
    result.skier_days, result.resort_days = len(day_jobs), len(count_jobs)
    return result


def _get_all(base_url: str, jobs: list[tuple[str, Any]], threads: int,
             keyed: bool = False) -> list[Any]:
    """GET every path of ``jobs`` from ``threads`` keep-alive connections; in job order."""
    answers: list[Any] = [None] * len(jobs)
    cursor = iter(range(len(jobs)))
    lock = threading.Lock()

    def worker() -> None:
        conn = Connection(base_url, WAIT_MS / 1000 + 10)
        try:
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                path, key = jobs[n]
                answers[n] = (path, _get(conn, path), key) if keyed else (path, _get(conn, path))
        finally:
            conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, threads))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return answers


def _get(conn: Connection, path: str) -> tuple[int | str, Any]:
    for attempt in range(3):
        try:
            status, _headers, data = conn.request("GET", path)
        except RETRYABLE as exc:
            if attempt == 2:
                return type(exc).__name__, None
            continue
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")
    return "unreachable", None
