"""Enqueueing jobs and waiting for their results."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from liftline.errors import BrokerError, InvalidWrite, LiftlineError, NotFound, Timeout
from liftline.jobs import topology
from liftline.jobs.spec import new_job
from liftline.jobs.status import JobStatus
from liftline.queue.confirms import ConfirmedChannel
from liftline.queue.connection import connect_blocking
from liftline.settings import Settings
from liftline.store.redis_store import connect

if TYPE_CHECKING:
    from liftline.app import App


class JobFailed(LiftlineError):
    """The job ended dead: its retries are spent or it crashed its workers."""


class JobHandle:
    """A submitted job: its id, its status, and its result once done."""

    def __init__(self, job_id: str, status: JobStatus, created: bool = True) -> None:
        self.id = job_id
        self.created = created
        self._status = status

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def status(self) -> dict[str, Any]:
        record = self._status.get(self.id)
        if record is None:
            raise NotFound(f"job {self.id} is unknown (or its result expired)")
        return record

    def result(self, timeout: float | None = None) -> Any:
        """The handler's return value; raises JobFailed if the job died, Timeout if
        it is not done in ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            record = self.status()
            if record["state"] == "succeeded":
                return record.get("result")
            if record["state"] == "dead":
                raise JobFailed(f"job {self.id} ({record.get('name')}) is dead after "
                                f"{record['attempt']} attempt(s): {record.get('error', '')}")
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"job {self.id} is still {record['state']} after {timeout}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


class JobClient:
    """Enqueues jobs with publisher confirms. Thread-safe (one connection, a lock)."""

    def __init__(self, settings: Settings, app: App | None = None) -> None:
        self.settings = settings
        self.app = app
        self._lock = threading.Lock()
        self._redis = connect(settings.redis_url)
        self.status = JobStatus(self._redis, settings.cluster, settings.job_result_ttl_s)
        self._conn: pika.BlockingConnection | None = None
        self._pub: ConfirmedChannel | None = None
        self.names = topology.JobNames(settings.cluster)

    def _channel(self) -> ConfirmedChannel:
        if self._conn is None or not self._conn.is_open or (
                self._pub is not None and self._pub.broken):
            if self._conn is not None and self._conn.is_open:
                try:
                    self._conn.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass
            self._conn = connect_blocking(self.settings, name="liftline-jobs-client")
            topology.declare(self._conn.channel(), self.settings)
            self._pub = ConfirmedChannel(self._conn)
        assert self._pub is not None
        return self._pub

    def _check(self, name: str, args: dict[str, Any]) -> None:
        if self.app is None:
            return
        spec = self.app.jobs.get(name)
        if spec is None:
            raise InvalidWrite(f"unknown job {name!r}; known: {', '.join(sorted(self.app.jobs))}")
        spec.check_args(args)

    def enqueue(self, name: str, *, key: str | None = None, job_id: str | None = None,
                **args: Any) -> JobHandle:
        """Submit one job; returns once RabbitMQ confirmed it.

        With ``job_id`` already known, nothing is sent and the existing job's
        handle is returned (``handle.created`` is False). With ``key``, the job
        runs after every earlier job of that key.
        """
        return self.enqueue_many([(name, args, key, job_id)])[0]

    def enqueue_many(self, jobs: list[tuple[str, dict[str, Any], str | None, str | None]]
                     ) -> list[JobHandle]:
        """Submit many ``(name, args, key, job_id)`` jobs, waiting once for all confirms."""
        built = []
        for name, args, key, job_id in jobs:
            self._check(name, args)
            built.append(new_job(name, args, key, job_id))
        fresh = self.status.create_many([(j.id, j.name, j.key) for j in built])
        prepared = list(zip(built, fresh, strict=True))
        messages = []
        for job, is_new in prepared:
            if not is_new:
                continue
            routing = f"k{topology.key_queue(job.key, self.settings)}" if job.key else "any"
            props = pika.BasicProperties(message_id=job.id, delivery_mode=2,
                                         content_type="application/x-msgpack",
                                         type=f"liftline.job.{job.name}")
            messages.append((self.names.exchange, routing, job.pack(), props))
        try:
            with self._lock:
                self._publish(messages)
        except LiftlineError:
            for job, is_new in prepared:
                if is_new:
                    self.status.forget(job.id)
            raise
        return [JobHandle(job.id, self.status, created) for job, created in prepared]

    def _publish(self, messages: list[Any]) -> None:
        for attempt in (1, 2):
            try:
                self._channel().publish_all(messages, self.settings.confirm_timeout_s,
                                            self.settings.confirm_stall_s)
                return
            except (BrokerError, pika.exceptions.AMQPError, OSError):
                # A connection that went stale while idle, a nack or stalled confirms
                # (a queue leader died): one fresh try on a new connection. A job
                # published twice runs once (its id is checked before it runs).
                if self._pub is not None:
                    self._pub.broken = True
                if attempt == 2:
                    raise

    def handle(self, job_id: str) -> JobHandle:
        return JobHandle(job_id, self.status, False)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn.is_open:
                try:
                    self._conn.close()
                except (pika.exceptions.AMQPError, OSError):
                    pass
            self._redis.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
