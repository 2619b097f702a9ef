"""The autoscaler's Prometheus endpoint (text exposition format 0.0.4), stdlib only.

    liftline_backlog{cluster,kind="stream",partition="3"}   writes not applied by the primary
    liftline_backlog{cluster,kind="jobs",queue="…"}         ready jobs in a job queue
    liftline_backlog{cluster,kind="jobs_unacked",queue="all"}  jobs being run
    liftline_stream_lag_entries{cluster,partition}           the same lag in stream entries
    liftline_missing_writes{cluster,partition}               writes missing from a stream
                                                            (gaps in a producer's seqs)
    liftline_workers_desired / liftline_workers_current     the pool
    liftline_autoscale_decisions_total{action}              decisions by action

``/metrics`` serves that, ``/backlog`` the same figures as JSON (for KEDA's
metrics-api scaler), ``/healthz`` 200 while decisions keep coming.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from liftline.autoscale.backlog import Backlog
from liftline.autoscale.policy import Decision

log = logging.getLogger(__name__)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(cluster: str, backlog: Backlog | None, decision: Decision | None,
           decisions: Counter[str]) -> str:
    """The /metrics text for the last reading and decision."""
    c = _label(cluster)
    lines = ["# HELP liftline_backlog Work not done yet: writes behind the primary per "
             "partition (kind=stream), ready jobs per queue (kind=jobs), jobs running "
             "(kind=jobs_unacked).",
             "# TYPE liftline_backlog gauge"]
    if backlog is not None:
        for p, writes in sorted(backlog.streams.items()):
            lines.append(f'liftline_backlog{{cluster="{c}",kind="stream",partition="{p}"}} '
                         f"{writes}")
        for queue, ready in sorted(backlog.jobs.items()):
            lines.append(f'liftline_backlog{{cluster="{c}",kind="jobs",queue="{_label(queue)}"}}'
                         f" {ready}")
        lines.append(f'liftline_backlog{{cluster="{c}",kind="jobs_unacked",queue="all"}} '
                     f"{backlog.jobs_unacked}")
        lines += ["# HELP liftline_stream_lag_entries Stream entries (batches) behind the "
                  "primary, per partition.",
                  "# TYPE liftline_stream_lag_entries gauge"]
        for p, entries in sorted(backlog.entries.items()):
            lines.append(f'liftline_stream_lag_entries{{cluster="{c}",partition="{p}"}} '
                         f"{entries}")
        lines += ["# HELP liftline_missing_writes Writes missing from a partition's stream: "
                  "gaps in a producer's sequence numbers (refused or lost writes; see "
                  "liftline deadletters).",
                  "# TYPE liftline_missing_writes gauge"]
        for p in sorted(backlog.entries):
            lines.append(f'liftline_missing_writes{{cluster="{c}",partition="{p}"}} '
                         f"{backlog.missing.get(p, 0)}")
    if decision is not None:
        lines += ["# HELP liftline_workers_desired Workers the autoscaler wants now.",
                  "# TYPE liftline_workers_desired gauge",
                  f'liftline_workers_desired{{cluster="{c}"}} {decision.desired}',
                  "# HELP liftline_workers_current Workers running when it decided.",
                  "# TYPE liftline_workers_current gauge",
                  f'liftline_workers_current{{cluster="{c}"}} {decision.current}']
    lines += ["# HELP liftline_autoscale_decisions_total Decisions made, by action.",
              "# TYPE liftline_autoscale_decisions_total counter"]
    for action in ("up", "down", "wait", "steady"):
        lines.append(f'liftline_autoscale_decisions_total{{cluster="{c}",action="{action}"}} '
                     f"{decisions[action]}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves the latest texts on ``host:port`` from a daemon thread."""

    def __init__(self, host: str, port: int, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._text = "# no reading yet\n"
        self._json: dict[str, Any] = {}
        self._updated = time.monotonic()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    server._answer(self, 200, server.text(), "text/plain; version=0.0.4")
                elif path == "/backlog":
                    server._answer(self, 200, json.dumps(server.snapshot()), "application/json")
                elif path == "/healthz":
                    ok = server.healthy()
                    server._answer(self, 200 if ok else 503, "ok\n" if ok else "stale\n",
                                   "text/plain")
                else:
                    server._answer(self, 404, "not found\n", "text/plain")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("metrics: " + format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="liftline-autoscale-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def publish(self, text: str, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._text, self._json, self._updated = text, snapshot, time.monotonic()

    def text(self) -> str:
        with self._lock:
            return self._text

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._json)

    def healthy(self) -> bool:
        with self._lock:
            return time.monotonic() - self._updated <= self.stale_after_s

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: str, ctype: str) -> None:
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
