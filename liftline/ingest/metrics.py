"""Counters and latency histograms of one ingest process, in Prometheus text format.

Small on purpose: a handful of families, updated on the event loop (one thread,
so no locks). With ``--processes N`` each process keeps its own figures and a
scrape reaches one of them; the ``producer`` label tells them apart. The
per-route latency of all processes together is :mod:`liftline.ingest.stats`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

# Seconds; confirms take ~1-5 ms here, a blocked broker up to the publish timeout.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    __slots__ = ("counts", "total", "count", "max")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1
        if seconds > self.max:
            self.max = seconds


class Metrics:
    """What the service counts; :meth:`render` gives the /metrics text."""

    def __init__(self, producer_id: str = "") -> None:
        self.producer_id = producer_id
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], Histogram] = defaultdict(Histogram)
        self.writes: dict[str, int] = defaultdict(int)  # accepted / refused / failed
        self.confirm = Histogram()
        self.gauges: dict[str, Callable[[], float]] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.latency[(method, route)].observe(seconds)

    def count_writes(self, outcome: str, n: int = 1) -> None:
        self.writes[outcome] += n

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> str:
        pid = _escape(self.producer_id)
        lines = [
            "# HELP liftline_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE liftline_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(f'liftline_http_requests_total{{producer="{pid}",method="{method}",'
                         f'route="{_escape(route)}",status="{status}"}} {n}')
        lines += ["# HELP liftline_http_request_seconds Time to answer, by route.",
                  "# TYPE liftline_http_request_seconds histogram"]
        for (method, route), hist in sorted(self.latency.items()):
            labels = f'producer="{pid}",method="{method}",route="{_escape(route)}"'
            lines += _histogram("liftline_http_request_seconds", labels, hist)
        lines += ["# HELP liftline_ingest_writes_total Writes by outcome: accepted (confirmed),"
                  " refused (invalid), failed (not confirmed in time, broker down or blocked).",
                  "# TYPE liftline_ingest_writes_total counter"]
        for outcome, n in sorted(self.writes.items()):
            lines.append(f'liftline_ingest_writes_total{{producer="{pid}",outcome="{outcome}"}}'
                         f" {n}")
        lines += ["# HELP liftline_ingest_confirm_seconds Submit to RabbitMQ confirm, per write.",
                  "# TYPE liftline_ingest_confirm_seconds histogram"]
        lines += _histogram("liftline_ingest_confirm_seconds", f'producer="{pid}"', self.confirm)
        for name, read in sorted(self.gauges.items()):
            lines += [f"# TYPE liftline_ingest_{name} gauge",
                      f'liftline_ingest_{name}{{producer="{pid}"}} {read():g}']
        return "\n".join(lines) + "\n"


def _histogram(name: str, labels: str, hist: Histogram) -> list[str]:
    out = []
    cumulative = 0
    for bound, n in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
        cumulative += n
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        out.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
    out.append(f"{name}_sum{{{labels}}} {hist.total:.6f}")
    out.append(f"{name}_count{{{labels}}} {hist.count}")
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
