"""Load and checks shared by the ingest fault tests (import as ``from ingest_faults import …``).

Threads post one unique key per request until told to stop; afterwards every
request must have ended 202 or 503 (+ Retry-After) within the publish bound, and
every 202 must be applied.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import redis
from http_ingest import Http
from pipeline import redis_state, wait_flushed

from liftline import Settings
from liftline.tickets import Ticket

BOUND_S = 2.0  # ingest_publish_timeout_s
SLACK_S = 1.5  # the service's own grace, scheduling, and a loaded 2-core machine
MAX_REQUESTS = 20_000  # per run, whatever happens: the load always ends
# After a 503 a thread pauses this long (as a client honouring Retry-After would, only
# shorter): refusals come back in a millisecond, and without a pause an outage of a few
# seconds would spend the whole MAX_REQUESTS before the broker is back.
PAUSE_AFTER_503_S = 0.02


@dataclass
class Load:
    """Threads posting one unique key each per request until told to stop."""

    http: Http
    threads: int = 4
    results: list[tuple[str, int, float, dict, str | None]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(self.threads)]
        for t in self._threads:
            t.start()
        return self

    def _run(self, n: int) -> None:
        i = 0
        while not self.stop.is_set() and len(self.results) < MAX_REQUESTS:
            key = f"w{n}:{i}"
            i += 1
            try:
                answer = self.http.post("/v1/writes", {"op": "set", "key": key, "value": i})
            except BaseException as exc:  # a client timeout is a failure of the service
                self.errors.append(exc)
                return
            ticket = answer.body.get("ticket") if isinstance(answer.body, dict) else None
            with self.lock:
                self.results.append((key, answer.status, answer.elapsed_s, answer.headers,
                                     ticket))
            if answer.status == 503:
                self.stop.wait(PAUSE_AFTER_503_S)

    def count(self, status: int) -> int:
        """Requests answered with ``status`` so far; AssertionError once the load ended
        on its own (a client error, or MAX_REQUESTS spent): nothing more will come."""
        with self.lock:
            counted = sum(1 for r in self.results if r[1] == status)
            total = len(self.results)
        ended = not any(t.is_alive() for t in self._threads) and not self.stop.is_set()
        assert not ended, f"the load ended early after {total} requests: {self.errors[:3]}"
        return counted

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(BOUND_S + SLACK_S + 30)

    def check(self) -> list[tuple[str, int]]:
        """Every request ended 202 or 503 in time; returns the (key, value) acknowledged."""
        assert not self.errors, self.errors[:3]
        statuses = {r[1] for r in self.results}
        assert statuses <= {202, 503}, statuses
        slowest = max(r[2] for r in self.results)
        assert slowest < BOUND_S + SLACK_S, f"a request took {slowest:.2f}s"
        for key, status, _, headers, _ticket in self.results:
            if status == 503:
                assert int(headers["retry-after"]) >= 1, key
        return [(r[0], r[4]) for r in self.results if r[1] == 202]


def fault_settings(local_servers: Any, name: str) -> Settings:
    e = local_servers.endpoints
    return Settings.from_env(
        {}, amqp_url=e.amqp_url, redis_url=e.redis_url, cluster=name, partitions=4,
        flush_interval_ms=100, reconnect_attempts=4, reconnect_backoff_s=0.2,
        reconnect_backoff_max_s=1.0, ingest_publish_timeout_s=BOUND_S,
    )


def all_acknowledged_applied(client: redis.Redis, settings: Settings,
                              acked: list[tuple[str, str]]) -> None:
    tickets = [Ticket.parse(t) for _, t in acked]
    wait_flushed(client, settings, tickets, timeout_s=60)
    state = redis_state(client, settings)
    missing = [key for key, _ in acked if key not in state]
    assert not missing, f"{len(missing)} acknowledged writes were not applied: {missing[:5]}"
