"""The job runner: consumes job queues on its own connection and thread.

Handlers run in ``concurrency`` threads (:mod:`liftline.jobs.threadpool`: one
that overruns its timeout is replaced) or processes; the runner thread alone
touches pika. A job is acked only after its outcome is recorded: its result
in Redis, its retry published (confirmed) to a delay queue, or its dead letter
published (confirmed). A crash before that redelivers it (at least once); a job
that already succeeded is not run again.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from liftline import codec
from liftline.app import App, JobSpec
from liftline.errors import BrokerUnavailable, InvalidMessage, InvalidWrite, StoreUnavailable
from liftline.jobs import topology
from liftline.jobs.spec import Job, JobContext
from liftline.jobs.status import TERMINAL, JobStatus
from liftline.jobs.threadpool import HandlerThreads
from liftline.queue.confirms import ConfirmedChannel
from liftline.queue.connection import connect_blocking
from liftline.settings import Settings
from liftline.store.redis_store import connect

log = logging.getLogger(__name__)
_PROPS = dict(delivery_mode=2, content_type="application/x-msgpack")


def _wake(conn: pika.BlockingConnection) -> None:
    with contextlib.suppress(Exception):  # the connection may be closed by now
        conn.add_callback_threadsafe(_nothing)


def _nothing() -> None:
    return None


def _call(run: _Running, ctx: JobContext) -> Any:
    """In a pool thread: start the clock for the timeout, call the handler."""
    if run.spec.timeout:
        run.deadline = time.monotonic() + run.spec.timeout
        ctx.deadline = time.time() + run.spec.timeout
    return run.spec.fn(ctx, **run.job.args)


def plan_acks(finished: list[int], still_open: set[int]) -> tuple[int | None, list[int]]:
    """How to ack the ``finished`` delivery tags of a channel whose other unsettled
    deliveries are ``still_open``: one multiple ack up to the returned tag (None: no
    multiple ack) for every finished tag below the lowest open one, which it must
    not reach, and single acks for the rest."""
    lowest_open = min(still_open, default=None)
    below = [t for t in finished if lowest_open is None or t < lowest_open]
    singles = sorted(t for t in finished if lowest_open is not None and t > lowest_open)
    return (max(below) if below else None), singles


@dataclass
class _Running:
    job: Job
    spec: JobSpec
    channel: Any
    tag: int
    future: cf.Future[Any] | None
    deadline: float | None
    keyed: bool
    retry_at: float = 0.0
    # Delivered before to a worker that died holding it: it may be what killed it.
    suspect: bool = False


class JobRunner:
    """Runs the App's jobs until stopped."""

    def __init__(self, settings: Settings, app: App, member_id: str, *,
                 concurrency: int = 4, grace_s: float = 30.0, pool: str = "threads") -> None:
        self.settings = settings
        self.app = app
        self.member_id = member_id
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.names = topology.JobNames(settings.cluster)
        self._redis = connect(settings.redis_url)
        self.status = JobStatus(self._redis, settings.cluster, settings.job_result_ttl_s)
        self._pool: Any
        self._threads = pool != "processes"
        if pool == "processes":
            from liftline.jobs.procpool import ProcessPool

            self._pool = ProcessPool(app, concurrency)
        else:
            self._pool = HandlerThreads(concurrency)
        self._running: list[_Running] = []
        self._delays: set[int] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self.run, name="liftline-jobs", daemon=True)
        self._to_begin: list[_Running] = []
        self._pub: ConfirmedChannel | None = None
        self._conn: pika.BlockingConnection | None = None
        self._channels: list[Any] = []
        self._woken = False  # a handler asked the loop to wake and it has not yet
        # Per consuming channel: delivery tags not yet acked or given back.
        self._open_tags: dict[Any, set[int]] = {}

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def request_stop(self, *_args: object) -> None:
        self._stopping.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout or self.grace_s + 10)

    def run(self) -> None:
        """Serve until stopped, reconnecting with bounded backoff after failures."""
        while not self._stopping.is_set():
            try:
                self._serve()
            except (pika.exceptions.AMQPError, OSError, BrokerUnavailable,
                    StoreUnavailable) as exc:
                if self._stopping.is_set():
                    break
                log.warning("job runner lost a server (%r); reconnecting", exc)
                self._running.clear()
                self._to_begin.clear()
                self._stopping.wait(self.settings.reconnect_backoff_s)
            except Exception:
                # Anything else (a refused publish, a Redis error) must not end
                # the runner: unacked jobs come back when the connection closes.
                log.exception("job runner failed; reconnecting")
                # Unacked jobs come back from RabbitMQ; forget our copies.
                self._running.clear()
                self._to_begin.clear()
                self._stopping.wait(self.settings.reconnect_backoff_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._redis.close()

    def _serve(self) -> None:
        conn = connect_blocking(self.settings, name=f"liftline-jobs-{self.member_id}")
        self._conn = conn
        try:
            topology.declare(conn.channel(), self.settings)
            self._pub = ConfirmedChannel(conn)
            self._delays.clear()
            self._channels = []
            self._open_tags = {}
            work = conn.channel()
            # Four jobs per handler in flight keep the handlers busy across the
            # Redis and ack round trips. If the worker dies, each of them counts one
            # delivery and moves to the suspects queue, where they run one at a
            # time: an innocent job pays one delivery, not the whole limit.
            work.basic_qos(prefetch_count=self.concurrency * 4)
            work.basic_consume(self.names.queue, self._deliver(keyed=False))
            self._channels.append(work)
            # Jobs that were out when a worker died wait here and run one at a
            # time, each alone on its worker (single active consumer).
            suspects = conn.channel()
            suspects.basic_qos(prefetch_count=1)
            suspects.basic_consume(self.names.suspect, self._deliver(keyed=False))
            self._channels.append(suspects)
            for n in range(self.settings.job_key_queues):
                keyed = conn.channel()
                keyed.basic_qos(prefetch_count=1)  # one job at a time per key queue
                keyed.basic_consume(self.names.keyed(n), self._deliver(keyed=True))
                self._channels.append(keyed)
            intake = conn.channel()
            intake.basic_qos(prefetch_count=50)
            intake.basic_consume(self.names.intake, self._on_dead_intake)
            self._channels.append(intake)
            while not self._stopping.is_set():
                conn.process_data_events(time_limit=0.05)
                self._settle()
            self._drain(conn)
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                if conn.is_open:
                    conn.close()

    def _drain(self, conn: pika.BlockingConnection) -> None:
        """Graceful stop: no new deliveries; finish (or give back) what is running."""
        for channel in self._channels:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                for tag in list(channel.consumer_tags):
                    channel.basic_cancel(tag)
        deadline = time.monotonic() + self.grace_s
        while self._running and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
            self._settle(stopping=True)

    # -- deliveries ----------------------------------------------------------
    def _deliver(self, keyed: bool) -> Any:
        def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
            self._open_tags.setdefault(channel, set()).add(method.delivery_tag)
            self._start(channel, method.delivery_tag, props, body, keyed)
        return on_message

    def _start(self, channel: Any, tag: int, props: Any, body: bytes, keyed: bool) -> None:
        try:
            job = Job.unpack(body)
        except InvalidMessage as exc:
            self._to_dead(body, props.message_id or "?", "?", 0, f"malformed job: {exc}", "")
            self._ack(channel, tag)
            return
        spec = self.app.jobs.get(job.name)
        try:
            if spec is None:
                raise InvalidWrite(f"unknown job {job.name!r}")
            spec.check_args(job.args)
        except InvalidWrite as exc:
            self._to_dead(body, job.id, job.name, job.attempt, str(exc), "")
            self._ack(channel, tag)
            return
        headers = props.headers or {}
        suspect = int(headers.get("x-delivery-count", 0)) > 0 or "x-liftline-suspect" in headers
        if suspect and not keyed and "x-liftline-suspect" not in headers:
            # It was out when a worker died, maybe because of it: move it to the
            # suspects queue, so that neither it nor the jobs that came back with
            # it can take each other down again.
            assert self._pub is not None
            self._pub.publish("", self.names.suspect, body, pika.BasicProperties(
                message_id=job.id, headers={"x-liftline-suspect": 1}, **_PROPS))
            self._pub.wait(self.settings.confirm_timeout_s)
            self._ack(channel, tag)
            return
        self._to_begin.append(_Running(job, spec, channel, tag, None, None, keyed,
                                       suspect=suspect))

    def _take_to_begin(self) -> list[_Running]:
        """The delivered jobs to start this turn (a suspect runs alone: it waits for
        the running jobs, and the others wait for it)."""
        if not self._to_begin or any(r.suspect for r in self._running):
            return []
        batch, held = self._to_begin, []
        for i, run in enumerate(batch):
            if run.suspect and (self._running or i > 0):
                held, batch = batch[i:], batch[:i]
                break
            if run.suspect:
                held, batch = batch[1:], batch[:1]
                break
        self._to_begin = held
        return batch

    def _submit(self, run: _Running) -> None:
        spec, job = run.spec, run.job
        run.deadline = None
        ctx = JobContext(job.id, job.name, job.attempt, job.key, job.enqueued_at)
        if self._threads:
            run.future = self._pool.submit(_call, run, ctx)
        else:
            if spec.timeout:
                run.deadline = time.monotonic() + spec.timeout
                ctx.deadline = time.time() + spec.timeout
            run.future = self._pool.submit(spec.fn, ctx, **job.args)
        run.future.add_done_callback(self._handler_done)

    def _handler_done(self, _future: Any) -> None:
        """In a pool thread: wake the runner's loop, once per turn however many end."""
        conn = self._conn
        if conn is not None and not self._woken:
            self._woken = True
            _wake(conn)

    # -- outcomes ----------------------------------------------------------
    def _settle(self, stopping: bool = False) -> None:
        """One turn: collect what the handlers finished, then in one Redis round trip
        store those results and mark this turn's deliveries running; ack the
        finished jobs and hand the new ones to handlers."""
        self._woken = False  # handlers ending from here on wake the loop again
        now = time.monotonic()
        still: list[_Running] = []
        done: list[tuple[_Running, Any]] = []
        for run in self._running:
            if run.future is None:  # a keyed job waiting for its retry
                if now >= run.retry_at and not stopping:
                    self._to_begin.append(run)
                    continue
                if stopping:
                    # Give it back: it will run again, in order, elsewhere.
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        self._settled(run.channel, run.tag)
                        run.channel.basic_nack(run.tag, requeue=True)
                    continue
                still.append(run)
                continue
            if run.future.done():
                error = run.future.exception()
                if error is None:
                    result = run.future.result()
                    try:
                        codec.pack(result)
                    except InvalidWrite as exc:
                        self._failed(run, exc)
                    else:
                        done.append((run, result))
                        continue
                else:
                    self._failed(run, error)
            elif run.deadline is not None and now > run.deadline:
                # A thread cannot be stopped: it is abandoned and replaced; a
                # process is killed and replaced.
                self._pool.abandon(run.future)
                run.future.cancel()
                self._failed(run, TimeoutError(f"no result within {run.spec.timeout}s"))
            else:
                still.append(run)
                continue
            if run.future is None:  # scheduled for a keyed retry
                still.append(run)
        self._running = still
        begin = self._take_to_begin()
        if not done and not begin:
            return
        states = self.status.settle_many(
            [(r.job.id, r.job.name, r.job.attempt, result) for r, result in done],
            [(r.job.id, r.job.name, r.job.attempt) for r in begin], self.member_id)
        self._ack_finished([run for run, _ in done])
        for run, state in zip(begin, states, strict=True):
            if state in TERMINAL:
                log.info("job %s already %s; skipping a repeat delivery", run.job.id, state)
                self._ack(run.channel, run.tag)
                continue
            self._submit(run)
            self._running.append(run)

    # -- acks ----------------------------------------------------------------
    def _settled(self, channel: Any, tag: int) -> None:
        """``tag`` is acked or given back: a multiple ack may now pass over it."""
        self._open_tags.get(channel, set()).discard(tag)

    def _ack(self, channel: Any, tag: int) -> None:
        self._settled(channel, tag)
        channel.basic_ack(tag)

    def _ack_finished(self, runs: list[_Running]) -> None:
        """Ack the jobs of this turn whose results are stored, sent on the loop's next
        turn in one write: per channel one multiple ack for those below every
        delivery still open (running, waiting or held), single acks for the rest."""
        by_channel: dict[Any, list[int]] = {}
        for run in runs:
            by_channel.setdefault(run.channel, []).append(run.tag)
        for channel, tags in by_channel.items():
            still_open = self._open_tags.get(channel, set())
            still_open.difference_update(tags)
            up_to, singles = plan_acks(tags, still_open)
            if up_to is not None:
                channel._impl.basic_ack(up_to, multiple=True)
            for tag in singles:
                channel._impl.basic_ack(tag)

    def _failed(self, run: _Running, error: BaseException) -> None:
        job, spec = run.job, run.spec
        text = f"{type(error).__name__}: {error}"
        tb = "".join(traceback.format_exception(error))[-8000:]
        self.status.set(job.id, job.name, "failed", attempt=job.attempt, counter="failed",
                        error=text)
        if job.attempt > spec.retries:
            self._to_dead(job.pack(), job.id, job.name, job.attempt,
                          f"failed after {job.attempt} attempt(s): {text}", tb)
            self._ack(run.channel, run.tag)
            return
        delay = spec.delay(job.attempt)
        self.status.set(job.id, job.name, "retrying", attempt=job.attempt, error=text,
                        retry_in=round(delay, 3))
        job.attempt += 1
        if run.keyed:
            # Retry in place, holding the key's queue: later jobs of the key wait.
            run.future = None
            run.retry_at = time.monotonic() + delay
            return
        assert self._pub is not None
        ms = topology.delay_step(delay)
        if ms not in self._delays:
            topology.declare_delay(self._pub.channel, self.names, ms)
            self._delays.add(ms)
        self._pub.publish("", self.names.delay(ms), job.pack(),
                          pika.BasicProperties(message_id=job.id, **_PROPS))
        self._pub.wait(self.settings.confirm_timeout_s)
        self._ack(run.channel, run.tag)

    def _to_dead(self, body: bytes, job_id: str, name: str, attempts: int, error: str,
                 tb: str) -> None:
        """Send a job to the dead-letter intake with why (confirmed before the ack)."""
        assert self._pub is not None
        log.warning("job %s (%s) is dead: %s", job_id, name, error)
        headers = {"x-liftline-error": error[:2000], "x-liftline-traceback": tb,
                   "x-liftline-attempts": attempts, "x-liftline-job": name}
        self._pub.publish(self.names.dlx, "", body,
                          pika.BasicProperties(message_id=job_id, headers=headers, **_PROPS))
        self._pub.wait(self.settings.confirm_timeout_s)

    def _on_dead_intake(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        """Record a dead job in Redis and park it in the dead-letter queue."""
        headers = dict(props.headers or {})
        job_id, name, attempts = props.message_id or "?", "?", 0
        with contextlib.suppress(InvalidMessage):
            job = Job.unpack(body)
            job_id, name, attempts = job.id, job.name, job.attempt
        error = headers.get("x-liftline-error")
        if error is None:  # dead-lettered by RabbitMQ itself
            reason = headers.get("x-first-death-reason", "unknown")
            count = headers.get("x-delivery-count", self.settings.job_delivery_limit)
            error = (f"crashed or lost its worker {count} times (delivery limit)"
                     if reason == "delivery_limit" else f"dead-lettered by RabbitMQ: {reason}")
            if isinstance(error, bytes):
                error = error.decode(errors="replace")
        headers.update({"x-liftline-error": error, "x-liftline-job": name,
                        "x-liftline-attempts": headers.get("x-liftline-attempts", attempts),
                        "x-liftline-dead-at-ms": int(time.time() * 1000)})
        if job_id != "?":
            self.status.set(job_id, name, "dead", attempt=int(headers["x-liftline-attempts"]),
                            counter="dead", error=error,
                            traceback=headers.get("x-liftline-traceback", ""))
        assert self._pub is not None
        self._pub.publish("", self.names.dead, body,
                          pika.BasicProperties(message_id=job_id, headers=headers, **_PROPS))
        self._pub.wait(self.settings.confirm_timeout_s)
        channel.basic_ack(method.delivery_tag)
