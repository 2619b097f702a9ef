"""The job runner: consumes job queues on its own connection and thread.

Handlers run in ``concurrency`` threads (:mod:`liftline.jobs.threadpool`: one
that overruns its timeout is replaced) or processes; the runner thread alone
touches pika. A job is acked only after its outcome is recorded: its result
in Redis, its retry published (confirmed) to a delay queue, or its dead letter
published (confirmed). A crash before that redelivers it (at least once); a job
that already succeeded is not run again.

What each outcome is comes from :mod:`liftline.jobs.outcomes` (pure), how it
is written from :mod:`liftline.jobs.outcome_io`; the App's job hooks
(:mod:`liftline.jobs.hooks`) are called around both.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from liftline.app import App, JobSpec
from liftline.errors import BrokerUnavailable, StoreUnavailable
from liftline.jobs import outcomes, topology
from liftline.jobs.acks import AckLedger
from liftline.jobs.hooks import Hooks
from liftline.jobs.outcome_io import OutcomeWriter
from liftline.jobs.outcomes import Dead, Finished, Retry, Succeed
from liftline.jobs.spec import Job, JobContext
from liftline.jobs.status import TERMINAL, JobStatus
from liftline.jobs.threadpool import HandlerThreads
from liftline.queue.confirms import ConfirmedChannel
from liftline.queue.connection import connect_blocking
from liftline.settings import Settings
from liftline.store.redis_store import connect

log = logging.getLogger(__name__)


def _wake(conn: pika.BlockingConnection) -> None:
    with contextlib.suppress(Exception):  # the connection may be closed by now
        conn.add_callback_threadsafe(_nothing)


def _nothing() -> None:
    return None


def _call(run: _Running, ctx: JobContext, hooks: Hooks) -> Any:
    """In a pool thread: start the clock for the timeout, call the hooks, then the
    handler."""
    if run.spec.timeout:
        run.deadline = time.monotonic() + run.spec.timeout
        ctx.deadline = time.time() + run.spec.timeout
    hooks.before_job(ctx)
    return run.spec.fn(ctx, **run.job.args)


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
    ctx: JobContext | None = None  # the running attempt's, made when it is submitted


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
        self._out = OutcomeWriter(self.status, self.names, settings.confirm_timeout_s)
        self._hooks = Hooks(app.job_hooks)
        self._pool: Any
        self._threads = pool != "processes"
        if pool == "processes":
            from liftline.jobs.procpool import ProcessPool

            self._pool = ProcessPool(app, concurrency)
        else:
            self._pool = HandlerThreads(concurrency)
        self._running: list[_Running] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self.run, name="liftline-jobs", daemon=True)
        self._to_begin: list[_Running] = []
        self._conn: pika.BlockingConnection | None = None
        self._channels: list[Any] = []
        self._woken = False  # a handler asked the loop to wake and it has not yet
        self._acks = AckLedger()

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
            except Exception:
                # Anything else (a refused publish, a Redis error) must not end
                # the runner: unacked jobs come back when the connection closes.
                log.exception("job runner failed; reconnecting")
            else:
                continue
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
            self._out.connected(ConfirmedChannel(conn))
            self._channels = []
            self._acks.clear()
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
            self._acks.delivered(channel, method.delivery_tag)
            self._start(channel, method.delivery_tag, props, body, keyed)
        return on_message

    def _start(self, channel: Any, tag: int, props: Any, body: bytes, keyed: bool) -> None:
        seen = outcomes.on_delivery(body, props.message_id, props.headers, keyed, self.app.jobs)
        if isinstance(seen, outcomes.Reject):
            self._out.dead(seen.job_id, seen.name, body, seen.dead)
            self._acks.ack(channel, tag)
        elif isinstance(seen, outcomes.ToSuspects):
            self._out.to_suspects(seen.job, body)
            self._acks.ack(channel, tag)
        else:
            self._to_begin.append(_Running(seen.job, seen.spec, channel, tag, None, None,
                                           keyed, suspect=seen.suspect))

    def _take_to_begin(self) -> list[_Running]:
        """The delivered jobs to start this turn, in order (a suspect runs alone)."""
        n = outcomes.to_start([r.suspect for r in self._to_begin],
                              [r.suspect for r in self._running])
        batch, self._to_begin = self._to_begin[:n], self._to_begin[n:]
        return batch

    def _submit(self, run: _Running) -> None:
        spec, job = run.spec, run.job
        run.deadline = None
        ctx = run.ctx = JobContext(job.id, job.name, job.attempt, job.key, job.enqueued_at)
        if self._threads:
            run.future = self._pool.submit(_call, run, ctx, self._hooks)
        else:
            if spec.timeout:
                run.deadline = time.monotonic() + spec.timeout
                ctx.deadline = time.time() + spec.timeout
            self._hooks.before_job(ctx)
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
        done: list[tuple[_Running, Succeed]] = []
        for run in self._running:
            if run.future is None:  # a keyed job waiting for its retry
                step = outcomes.held_retry(now, run.retry_at, stopping)
                if step == "begin":
                    self._to_begin.append(run)
                elif step == "give_back":
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        self._acks.give_back(run.channel, run.tag)
                else:
                    still.append(run)
                continue
            if run.future.done():
                error = run.future.exception()
                seen = Finished(run.job, run.spec, run.keyed, run.suspect, error=error,
                                result=None if error is not None else run.future.result())
            elif run.deadline is not None and now > run.deadline:
                # A thread cannot be stopped: it is abandoned and replaced; a
                # process is killed and replaced.
                self._pool.abandon(run.future)
                run.future.cancel()
                self._hooks.on_timeout(self._ctx(run))
                seen = Finished(run.job, run.spec, run.keyed, run.suspect, timed_out=True)
            else:
                still.append(run)
                continue
            outcome = outcomes.decide(seen)
            if isinstance(outcome, Succeed):
                done.append((run, outcome))
                continue
            self._failed(run, outcome)
            if run.future is None:  # held for a keyed retry
                still.append(run)
        self._running = still
        begin = self._take_to_begin()
        if not done and not begin:
            return
        states = self.status.settle_many(
            [(r.job.id, r.job.name, r.job.attempt, ok.packed) for r, ok in done],
            [(r.job.id, r.job.name, r.job.attempt) for r in begin], self.member_id)
        self._acks.ack_finished([(run.channel, run.tag) for run, _ in done])
        for run, ok in done:
            self._hooks.after_job(self._ctx(run), ok)
        for run, state in zip(begin, states, strict=True):
            if state in TERMINAL:
                log.info("job %s already %s; skipping a repeat delivery", run.job.id, state)
                self._acks.ack(run.channel, run.tag)
                continue
            self._submit(run)
            self._running.append(run)

    def _ctx(self, run: _Running) -> JobContext:
        assert run.ctx is not None, "a job that ran has its context"
        return run.ctx

    def _failed(self, run: _Running, outcome: Retry | Dead) -> None:
        """Carry out a failed attempt's outcome (after the hooks' say); a keyed retry
        keeps holding its delivery (``run.future`` None) until it is due."""
        ctx = self._ctx(run)
        outcome = self._hooks.on_failure(ctx, outcome)
        job = run.job
        if isinstance(outcome, Dead):
            self._out.dead(job.id, job.name, job.pack(), outcome, job)
            self._acks.ack(run.channel, run.tag)
        else:
            self._out.retry(job, outcome)
            if outcome.in_place:
                # Retry in place, holding the key's queue: later jobs of the key wait.
                job.attempt = outcome.attempt
                run.future = None
                run.retry_at = time.monotonic() + outcome.delay
            else:
                self._acks.ack(run.channel, run.tag)
            self._hooks.on_retry(ctx, outcome)
        self._hooks.after_job(ctx, outcome)

    def _on_dead_intake(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        """Record a dead job in Redis and park it in the dead-letter queue."""
        letter = outcomes.dead_letter(body, props.message_id, props.headers,
                                      self.settings.job_delivery_limit, int(time.time() * 1000))
        self._out.park(letter, body)
        channel.basic_ack(method.delivery_tag)
        self._hooks.on_dead(letter.context(), letter.dead)
