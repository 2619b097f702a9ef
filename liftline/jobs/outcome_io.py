"""Carrying out job outcomes: records in Redis, confirmed publishes to RabbitMQ.

Each method returns once what it did is durable (the Redis write made, the
publish confirmed), so the runner may ack the delivery afterwards: a crash in
between redelivers the job, it is never lost. Runner thread only (pika).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pika

from liftline.jobs import topology
from liftline.jobs.outcomes import SUSPECT_HEADER, Dead, DeadLetter, Retry
from liftline.jobs.spec import Job
from liftline.jobs.status import JobStatus
from liftline.queue.confirms import ConfirmedChannel

log = logging.getLogger(__name__)
_PROPS = dict(delivery_mode=2, content_type="application/x-msgpack")


def _props(message_id: str, headers: dict[str, Any] | None = None) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=message_id, headers=headers, **_PROPS)


class OutcomeWriter:
    """Writes outcomes for one runner; :meth:`connected` gives it each new
    connection's confirming channel."""

    def __init__(self, status: JobStatus, names: topology.JobNames,
                 confirm_timeout_s: float) -> None:
        self.status = status
        self.names = names
        self.confirm_timeout_s = confirm_timeout_s
        self._pub: ConfirmedChannel | None = None
        self._delays: set[int] = set()  # delay queues declared on this connection

    def connected(self, pub: ConfirmedChannel) -> None:
        self._pub = pub
        self._delays.clear()

    def _publish(self, exchange: str, routing_key: str, body: bytes,
                 props: pika.BasicProperties) -> None:
        assert self._pub is not None, "no connection yet"
        self._pub.publish(exchange, routing_key, body, props)
        self._pub.wait(self.confirm_timeout_s)

    def _record_failure(self, job: Job, error: str) -> None:
        self.status.set(job.id, job.name, "failed", attempt=job.attempt, counter="failed",
                        error=error)

    def retry(self, job: Job, retry: Retry) -> None:
        """Record the failed attempt and the retry; off a key queue, publish the next
        attempt to its delay queue (declared on first use)."""
        self._record_failure(job, retry.error)
        # counter: the per-name ``retrying`` gauge; the job's next begin takes it back.
        self.status.set(job.id, job.name, "retrying", attempt=job.attempt, counter="retrying",
                        error=retry.error, retry_in=round(retry.delay, 3))
        if retry.in_place:
            return
        assert self._pub is not None, "no connection yet"
        ms = retry.step_ms
        if ms not in self._delays:
            topology.declare_delay(self._pub.channel, self.names, ms)
            self._delays.add(ms)
        again = dataclasses.replace(job, attempt=retry.attempt)
        self._publish("", self.names.delay(ms), again.pack(), _props(job.id))

    def dead(self, job_id: str, name: str, body: bytes, dead: Dead,
             job: Job | None = None) -> None:
        """Record the failed attempt (if ``job`` ran: ``dead.error``), then send
        ``body`` to the dead-letter intake with why."""
        if job is not None and dead.error is not None:
            self._record_failure(job, dead.error)
        log.warning("job %s (%s) is dead: %s", job_id, name, dead.reason)
        headers = {"x-liftline-error": dead.reason[:2000], "x-liftline-traceback": dead.traceback,
                   "x-liftline-attempts": dead.attempts, "x-liftline-job": name}
        self._publish(self.names.dlx, "", body, _props(job_id, headers))

    def to_suspects(self, job: Job, body: bytes) -> None:
        """Move a delivery to the suspects queue, marked so that it stays there."""
        self._publish("", self.names.suspect, body, _props(job.id, {SUSPECT_HEADER: 1}))

    def park(self, letter: DeadLetter, body: bytes) -> None:
        """Record a dead letter in Redis (if its id is known) and park it in the
        dead-letter queue."""
        if letter.job_id != "?":
            self.status.set(letter.job_id, letter.name, "dead", attempt=letter.dead.attempts,
                            counter="dead", error=letter.dead.reason,
                            traceback=letter.dead.traceback)
        self._publish("", self.names.dead, body, _props(letter.job_id, letter.headers))
