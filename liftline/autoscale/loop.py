"""The control loop: read the backlog, decide, scale, record; every interval.

A reading that fails (a server away) makes no decision: the pool stays as it
is and the next interval tries again. A scaler that fails is logged and asked
again at the next decision. Each decision is logged once: at INFO when the pool
changes or the kind of decision changes (steady → waiting out the quiet window
…), at DEBUG while it repeats. Every decision is recorded in Redis.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable

from liftline.autoscale import record
from liftline.autoscale.backlog import Backlog, BacklogReader
from liftline.autoscale.metrics import MetricsServer, render
from liftline.autoscale.policy import DOWN, UP, Decision, Policy, PolicyConfig
from liftline.autoscale.scalers.base import Scaler
from liftline.errors import LiftlineError
from liftline.settings import Settings

log = logging.getLogger(__name__)


class Autoscaler:
    """Drives one :class:`Scaler` from the backlog of one cluster."""

    def __init__(self, settings: Settings, scaler: Scaler, *, dry_run: bool = False,
                 echo: Callable[[str], None] | None = None,
                 reader: BacklogReader | None = None) -> None:
        self.settings = settings
        self.scaler = scaler
        self.dry_run = dry_run
        self.echo = echo
        self.policy = Policy(PolicyConfig.from_settings(settings))
        self.reader = reader or BacklogReader(settings)
        self.decisions: Counter[str] = Counter()
        self.last: Decision | None = None
        self.last_backlog: Backlog | None = None
        self._last_logged: tuple[str, int] | None = None
        self._stop = False
        self.metrics: MetricsServer | None = None
        if settings.autoscale_metrics_port:
            self.metrics = MetricsServer(settings.autoscale_metrics_host,
                                         settings.autoscale_metrics_port,
                                         stale_after_s=max(10.0,
                                                           5 * settings.autoscale_interval_s))

    def request_stop(self, *_args: object) -> None:
        self._stop = True

    def run(self, *, install_signals: bool = True, max_seconds: float | None = None) -> None:
        """Decide every interval until SIGTERM/SIGINT (or ``max_seconds``), then close."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.settings.log_start("autoscaler")
        if self.metrics is not None:
            self.metrics.start()
            log.info("autoscaler metrics on http://%s:%d/metrics",
                     self.settings.autoscale_metrics_host, self.metrics.port)
        began = time.monotonic()
        try:
            while not self._stop:
                started = time.monotonic()
                self.tick()
                if max_seconds is not None and time.monotonic() - began >= max_seconds:
                    break
                self._wait(self.settings.autoscale_interval_s - (time.monotonic() - started))
        finally:
            self.close()

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + max(0.0, seconds)
        while not self._stop and (left := deadline - time.monotonic()) > 0:
            self.reader.wait(min(left, 0.1))
            self.scaler.poll()

    def tick(self) -> Decision | None:
        """One evaluation; the decision, or None if the backlog could not be read."""
        self.scaler.poll()
        try:
            backlog = self.reader.read()
        except LiftlineError as exc:
            log.warning("no decision: reading the backlog failed: %s", exc)
            return None
        current = self.scaler.current()
        decision = self.policy.decide(time.time(), current, backlog.stream_total,
                                      backlog.job_total)
        self.decisions[decision.action] += 1
        self.last, self.last_backlog = decision, backlog
        self._log(decision, backlog)
        if decision.desired != current:
            try:
                self.scaler.scale_to(decision.desired)
            except LiftlineError as exc:
                log.error("scaling to %d failed: %s (trying again next interval)",
                          decision.desired, exc)
        self._record(decision, backlog)
        return decision

    def _log(self, decision: Decision, backlog: Backlog) -> None:
        line = decision.describe() + f" (read in {backlog.read_s * 1000:.0f} ms)"
        key = (decision.action, decision.desired)
        if self.dry_run and self.echo is not None:  # every decision, on stdout
            self.echo(time.strftime("%H:%M:%S ", time.localtime(decision.at)) + "dry run " +
                      line)
            log.debug("autoscale %s", line)
        elif decision.action in (UP, DOWN) or key != self._last_logged:
            log.info("autoscale %s", line)
        else:
            log.debug("autoscale %s", line)
        self._last_logged = key

    def _record(self, decision: Decision, backlog: Backlog) -> None:
        pool = self.scaler.describe()
        try:
            record.store(self.reader.redis, self.settings.cluster, decision, pool,
                         {"dry_run": self.dry_run, "members": backlog.members})
        except LiftlineError as exc:
            log.warning("could not record the decision: %s", exc)
        if self.metrics is not None:
            self.metrics.publish(
                render(self.settings.cluster, backlog, decision, self.decisions),
                {"cluster": self.settings.cluster, "backlog": decision.backlog,
                 "streams": decision.stream_backlog, "jobs": decision.job_backlog,
                 "current": decision.current, "desired": decision.desired,
                 "target": self.settings.autoscale_target, "at": decision.at})

    def close(self) -> None:
        """Stop the metrics endpoint and the scaler (the local pool stops its workers)."""
        if self.metrics is not None:
            self.metrics.stop()
        try:
            self.scaler.close()
        finally:
            self.reader.close()
