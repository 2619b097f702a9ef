"""Steady mixed load on the 3-node RabbitMQ cluster with Redis behind Sentinels, and
the checks after it (import as ``from cluster_load import …``).

3 workers at R=2, two Producers pipelining up to 2,000 writes each and the HTTP
service (one ingest process, two client threads) all append unique ids to the
history lists (tests/history.py). :meth:`ClusterLoad.verify` then checks what a
fault test on this set must show: nothing acknowledged lost, nothing applied
twice (in Redis and in the owners' memory), counters within [acknowledged,
attempted], and every write missing from the streams one that its producer was
told had failed (a Producer's future raised; the HTTP service answered 503).
"""

from __future__ import annotations

import datetime
import re
import threading
from pathlib import Path
from typing import Any

from brokers import assert_history_holds, settled
from helpers import wait_until
from history import History, HttpLoad, PipelinedLoad
from http_ingest import Servers
from pipeline import Workers

from liftline import Producer
from liftline.settings import Settings
from liftline.store.keys import Keys

HTTP_IDS = range(3 * 10**8, 4 * 10**8)


class StateSampler:
    """Samples every partition's (epoch, offset) in Redis every 50 ms, through whatever
    primary the client finds. A flush from an owner that lost its epoch would show as
    an epoch or an offset going back; :attr:`regressions` lists each one seen."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.keys = Keys(settings.cluster)
        self.partitions = settings.partitions
        self.last: dict[int, tuple[int, int]] = {}
        self.samples = 0
        self.regressions: list[tuple[int, tuple[int, int], tuple[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StateSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                pipe = self.client.pipeline(transaction=False)
                for p in range(self.partitions):
                    pipe.hmget(self.keys.state(p), "epoch", "offset")
                rows = pipe.execute()
            except Exception:  # noqa: BLE001 - Redis failing over: sample again later
                continue
            self.samples += 1
            for p, (epoch, offset) in enumerate(rows):
                if epoch is None or offset is None:
                    continue
                now = (int(epoch), int(offset))
                before = self.last.get(p)
                if before and (now[0] < before[0] or now[1] < before[1]):
                    self.regressions.append((p, before, now))
                self.last[p] = now


EVENTS = {
    "claims": re.compile(r"took partition \d+ as primary|promoted to primary of partition"),
    "fenced_by_check": re.compile(r"dropping partition \d+: claimed by another worker"),
    "flushes_refused": re.compile(r"dropping partition \d+: partition \d+: flush with epoch"),
    "flushes_lost_by_redis": re.compile(r"a failover lost flushes"),
}


def ownership_events(pool: Workers, since: float) -> dict[str, int]:
    """From the workers' logs, what happened to ownership from ``since`` (wall clock):
    partitions claimed as primary, primaries that found a newer epoch and dropped the
    partition unflushed, and flushes Redis refused for an older epoch."""
    start = datetime.datetime.fromtimestamp(since)
    out = dict.fromkeys(EVENTS, 0)
    for worker in pool.started:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            try:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            if stamp >= start:
                for name, pattern in EVENTS.items():
                    out[name] += bool(pattern.search(line))
    return out


class ClusterLoad:
    """The workers, both Producers and the HTTP load; stopped by :meth:`stop`."""

    def __init__(self, settings: Settings, client: Any, ingest: Servers, tmp_path: Path) -> None:
        self.settings = settings
        self.client = client
        self.pool = Workers(settings, client, tmp_path)
        self.history = History()
        self.producers = [Producer(settings), Producer(settings)]
        self.loads = [PipelinedLoad(p, self.history, rate=800, window=2000,
                                    ids=range(1 + k * 10**8, (k + 1) * 10**8))
                      for k, p in enumerate(self.producers)]
        self.ingest = ingest
        self.http: HttpLoad | None = None
        self.running: list[PipelinedLoad | HttpLoad] = []  # loads started
        self.stats: list[Any] = []

    def start(self) -> ClusterLoad:
        for _ in range(3):
            self.pool.start()
        wait_until(lambda: settled(self.client, self.settings, 3), 60,
                   message="3 workers settled")
        # A 2 s publish bound (5 s by default): the confirms a node's SIGKILL holds up
        # (about 2 s) come back as some 503s, so the refused path is exercised too.
        server = self.ingest.start(self.settings, ingest_publish_timeout_s=2.0)
        self.http = HttpLoad(self.ingest.client(server, timeout_s=60), self.history,
                             ids=HTTP_IDS)
        for load in self.loads:
            load.__enter__()
            self.running.append(load)
        self.http.__enter__()
        self.running.append(self.http)
        return self

    def acked(self) -> int:
        with self.history.lock:
            return len(self.history.acked)

    def wait_acks(self, more: int, timeout_s: float = 60) -> None:
        target = self.acked() + more
        wait_until(lambda: self.acked() >= target, timeout_s, message=f"{more:,} more acks")

    def confirming_since(self, moment: float, count: int = 100) -> bool:
        """Both Producers and the HTTP service acknowledged ``count`` writes since then."""
        assert self.http is not None
        return all(ld.acked_since(moment) >= count for ld in self.loads) and \
            self.http.acked_since(moment) >= count // 10

    def stop(self) -> None:
        for load in self.running:
            load.stop()
        self.stats = [p.publisher.stats for p in self.producers]
        for producer in self.producers:
            producer.close()

    def verify(self) -> None:
        """The checks of the module docstring; prints the counts."""
        history, settings, http = self.history, self.settings, self.http
        assert http is not None
        for load in self.loads:
            assert not load.errors, load.errors
        assert not http.errors, http.errors[:5]
        print(f"acknowledged {len(history.acked):,} ({len(http.tickets):,} over HTTP), "
              f"refused {len(history.failed)} ({http.refused} HTTP 503); "
              f"publishers: {self.stats}")
        assert_history_holds(self.client, settings, history, http)
        self.pool.stop_all()
        assert all(w.proc.returncode == 0 for w in self.pool.started), \
            [w.log() for w in self.pool.started]

    def close(self) -> None:
        """Whatever happened: every load, producer and worker stopped."""
        if not self.stats:
            self.stop()
        self.pool.stop_all()

