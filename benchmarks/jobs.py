"""Scenario jobs: N no-op background jobs through liftline, Celery and Dramatiq.

The same workload for all three: N jobs whose handler does one ``INCR`` of a
counter in Redis, one worker process with 8 handler threads, the run's RabbitMQ
and Redis. For each system:

1. start its worker (``python -m liftline worker --jobs-only …``,
   ``python -m celery … worker --pool threads …``, ``python -m dramatiq …``) and
   wait until it consumes its queue;
2. one warm-up job (connections opened on both sides), then the counter is reset;
3. submit N jobs from this process (timed: the enqueue rate), then wait until the
   counter reaches N (first submit → all done: the end-to-end rate).

No results backend for Celery (``ignore_result``) nor Dramatiq (no Results
middleware); liftline always records each job's status in Redis (it has no switch
to turn that off), which is part of what it is measured with. The module docs of
``benchmarks/peers/*`` say what each does about publisher confirms and acks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import redis

from benchmarks.cluster import cleanup, redis_client, worker_env
from benchmarks.context import Context
from benchmarks.env import REPO
from benchmarks.jobs_peers import (
    CONCURRENCY,
    PeerWorker,
    WorkerCpu,
    consumer_prefetch,
    delete,
    wait_consuming,
)
from benchmarks.jobs_report import figures, trial_dict
from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from liftline.jobs import topology
from liftline.settings import Settings

CHUNK = 500
WARMUP_S = 30.0


@dataclass
class Trial:
    """One system, one way of submitting: what was run and what it measured."""

    key: str
    system: str
    submit_api: str
    confirms: str
    worker_cmd: str
    jobs: int = 0
    submitted: int = 0
    enqueue_s: float | None = None
    e2e_s: float | None = None
    done_at_submit_end: int = 0
    done: int = 0
    complete: bool = False
    worker_exit: int | None = None
    limit_s: float = 180.0
    others_before: float | None = None
    # What RabbitMQ applies to the worker's consumer(s) of the queue (management API).
    consumer_prefetch: list[int] | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def enqueue_per_s(self) -> float | None:
        return round(rate(self.submitted, self.enqueue_s)) if self.enqueue_s else None

    @property
    def e2e_per_s(self) -> float | None:
        return round(rate(self.done, self.e2e_s)) if self.e2e_s and self.complete else None

    @property
    def drain_per_s(self) -> float | None:
        """Jobs/s the worker finished after submitting ended (the worker alone)."""
        if not self.complete or self.e2e_s is None or self.enqueue_s is None:
            return None
        left, seconds = self.done - self.done_at_submit_end, self.e2e_s - self.enqueue_s
        return round(rate(left, seconds)) if left >= 100 and seconds > 0 else None


# -- the trial -----------------------------------------------------------------
def _count(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def _wait_count(client: redis.Redis, key: str, wanted: int, deadline: Deadline,
                worker: PeerWorker, label: str) -> bool:
    ticker = Ticker(2.0)
    while not deadline.passed():
        n = _count(client, key)
        if n >= wanted:
            return True
        worker.check_alive()
        if ticker.due():
            say(f"  {label}: {n:,}/{wanted:,} done")
        time.sleep(0.005)
    return False


def _run_trial(ctx: Context, trial: Trial, worker_argv: list[str], env: dict[str, str],
               queue: str, submit: Callable[[int, Deadline], int], counter: str,
               client: redis.Redis) -> None:
    """Start the worker, warm up, submit ``trial.jobs`` jobs, wait for the counter."""
    amqp_url = ctx.servers.amqp_url
    trial.others_before = ctx.quiet(f"jobs {trial.key}")
    say(f"jobs: {trial.key}: starting `{trial.worker_cmd}`")
    worker = PeerWorker(trial.key, worker_argv, env, ctx.log_dir)
    try:
        ready_s = wait_consuming(amqp_url, queue, worker)
        say(f"jobs: {trial.key}: worker pid {worker.pid} consuming {queue} after {ready_s:.1f}s;"
            " one warm-up job")
        client.delete(counter)
        submit(1, Deadline(WARMUP_S))
        if not _wait_count(client, counter, 1, Deadline(WARMUP_S), worker, "warm-up"):
            raise RuntimeError(f"the warm-up job did not run within {WARMUP_S:.0f}s:\n"
                               f"{worker.log_tail()}")
        client.delete(counter)
        cpu = WorkerCpu(ctx, worker)
        cpu.start()
        say(f"jobs: {trial.key}: submitting {trial.jobs:,} jobs with {trial.submit_api}")
        profiling = contextlib.ExitStack()
        if trial.system == "liftline":  # --profile: where liftline's time goes, both sides
            profiling.enter_context(ctx.profiled(worker.pid, f"jobs-{trial.key}-worker"))
            profiling.enter_context(ctx.profiled(os.getpid(), f"jobs-{trial.key}-enqueue"))
        with profiling:
            began = time.perf_counter()
            trial.submitted = submit(trial.jobs, Deadline(trial.limit_s))
            submitted_at = time.perf_counter()
            trial.enqueue_s = round(submitted_at - began, 3)
            trial.done_at_submit_end = _count(client, counter)
            if trial.submitted < trial.jobs:
                say(f"jobs: {trial.key}: {trial.limit_s:.0f}s limit: {trial.submitted:,} of "
                    f"{trial.jobs:,} submitted")
            say(f"jobs: {trial.key}: {trial.submitted:,} submitted in {trial.enqueue_s:.2f}s "
                f"({fmt_rate(rate(trial.submitted, trial.enqueue_s))}); "
                f"{trial.done_at_submit_end:,} done by then")
            trial.complete = _wait_count(client, counter, trial.submitted,
                                         Deadline(ctx.sizes.jobs_drain_limit_s), worker,
                                         trial.key)
            done_at = time.perf_counter()
        trial.cpu = cpu.stop()
        trial.consumer_prefetch = consumer_prefetch(ctx.servers.management_url, queue)
        ctx.results.cpu[f"jobs {trial.key}"] = trial.cpu
        trial.done = _count(client, counter)
        trial.e2e_s = round(done_at - began, 3)
        if trial.complete:
            say(f"jobs: {trial.key}: all {trial.done:,} done {trial.e2e_s:.2f}s after the "
                f"first submit ({fmt_rate(rate(trial.done, trial.e2e_s))})")
        else:
            say(f"jobs: {trial.key}: only {trial.done:,} done after "
                f"{ctx.sizes.jobs_drain_limit_s:.0f}s")
    finally:
        trial.worker_exit = worker.stop()


# -- the three systems ---------------------------------------------------------
def _peer_env(ctx: Context, queue: str, counter: str, confirm: bool) -> dict[str, str]:
    return {"BENCH_PEER_AMQP_URL": ctx.servers.amqp_url,
            "BENCH_PEER_REDIS_URL": ctx.servers.redis_url,
            "BENCH_PEER_QUEUE": queue, "BENCH_PEER_COUNTER": counter,
            "BENCH_PEER_CONFIRM": "1" if confirm else "0"}


def _load(module: str, env: dict[str, str]) -> ModuleType:
    """Import (or re-import) a peer module with its ``BENCH_PEER_*`` settings."""
    os.environ.update(env)
    name = f"benchmarks.peers.{module}"
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def _liftline(ctx: Context, counter: str, client: redis.Redis, many: bool) -> Trial:
    from liftline.jobs.client import JobClient

    settings = ctx.settings("jobs-many" if many else "jobs-one")
    worker_cmd = ("python -m liftline worker --jobs-only --concurrency "
                  f"{CONCURRENCY} --app benchmarks.peers.liftline_jobs:app")
    trial = Trial(
        key="liftline" if many else "liftline-1by1", system="liftline",
        submit_api=f"JobClient.enqueue_many, chunks of {CHUNK}" if many
        else "JobClient.enqueue, one at a time",
        confirms=f"always; one wait for the {CHUNK} confirms of a chunk" if many
        else "always; waits for each job's confirm",
        worker_cmd=worker_cmd, jobs=ctx.sizes.jobs,
        limit_s=ctx.sizes.jobs_submit_limit_s if many else ctx.sizes.jobs_single_limit_s)
    peer = _peer_env(ctx, "", counter, True)
    env = {**worker_env(settings), **peer}
    module = _load("liftline_jobs", peer)
    job_client = JobClient(settings, module.app)

    def submit(n: int, deadline: Deadline) -> int:
        done = 0
        if many:
            while done < n and not deadline.passed():
                step = min(CHUNK, n - done)
                job_client.enqueue_many([("noop", {}, None, None)] * step)
                done += step
        else:
            enqueue = job_client.enqueue
            while done < n:
                enqueue("noop")
                done += 1
                if done % 50 == 0 and deadline.passed():
                    break
        return done

    names = topology.JobNames(settings.cluster)
    try:
        _run_trial(ctx, trial, [sys.executable, *worker_cmd.split()[1:]], env, names.queue,
                   submit, counter, client)
    finally:
        job_client.close()
        delete(ctx.servers.amqp_url,
                [names.queue, names.intake, names.dead,
                 *([names.suspect] if hasattr(names, "suspect") else []),
                 *(names.keyed(n) for n in range(settings.job_key_queues))],
                [names.exchange, names.dlx])
        cleanup(settings)
    return trial


def _one_at_a_time(send_one: Any) -> Any:
    """A submit function calling ``send_one()`` n times, until the deadline passes."""

    def submit(n: int, deadline: Deadline) -> int:
        done = 0
        while done < n:
            send_one()
            done += 1
            if done % 50 == 0 and deadline.passed():
                break
        return done

    return submit


def _run_peer(ctx: Context, trial: Trial, env: dict[str, str], queue: str,
              submit: Callable[[int, Deadline], int], counter: str,
              client: redis.Redis) -> None:
    """A Celery or Dramatiq trial: its worker command with the peer's settings."""
    _run_trial(ctx, trial, [sys.executable, *trial.worker_cmd.split()[1:]],
               {**_base_env(), **env}, queue, submit, counter, client)


def _celery(ctx: Context, counter: str, client: redis.Redis, confirm: bool) -> Trial:
    queue = f"bench-celery-{ctx.run_id}-{'c' if confirm else 'n'}"
    worker_cmd = ("python -m celery -A benchmarks.peers.celery_app worker --pool threads "
                  f"--concurrency {CONCURRENCY} --loglevel WARNING")
    trial = Trial(
        key="celery" if confirm else "celery-noconfirm", system="Celery",
        submit_api="task.delay(), one at a time",
        confirms="kombu confirm_publish: waits for each message's confirm" if confirm
        else "none (Celery's default): delay() returns once the frame is written",
        worker_cmd=worker_cmd, jobs=ctx.sizes.jobs, limit_s=ctx.sizes.jobs_submit_limit_s)
    env = _peer_env(ctx, queue, counter, confirm)
    module = _load("celery_app", env)
    try:
        _run_peer(ctx, trial, env, queue, _one_at_a_time(module.noop.delay), counter, client)
    finally:
        with contextlib.suppress(Exception):
            module.app.close()
        delete(ctx.servers.amqp_url, [queue], [queue])
    return trial


def _dramatiq(ctx: Context, counter: str, client: redis.Redis, confirm: bool) -> Trial:
    queue = f"bench-dramatiq-{ctx.run_id}-{'c' if confirm else 'n'}"
    worker_cmd = (f"python -m dramatiq benchmarks.peers.dramatiq_app --processes 1 "
                  f"--threads {CONCURRENCY}")
    trial = Trial(
        key="dramatiq" if confirm else "dramatiq-noconfirm", system="Dramatiq",
        submit_api="actor.send(), one at a time",
        confirms="confirm_delivery=True: waits for each message's confirm" if confirm
        else "none (Dramatiq's default)",
        worker_cmd=worker_cmd, jobs=ctx.sizes.jobs, limit_s=ctx.sizes.jobs_submit_limit_s)
    env = _peer_env(ctx, queue, counter, confirm)
    module = _load("dramatiq_app", env)
    try:
        _run_peer(ctx, trial, env, queue, _one_at_a_time(module.noop.send), counter, client)
    finally:
        with contextlib.suppress(Exception):
            module.broker.close()
        delete(ctx.servers.amqp_url, [queue, f"{queue}.DQ", f"{queue}.XQ"], [])
    return trial


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIFTLINE_", "BENCH_PEER_"))}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# -- the scenario --------------------------------------------------------------
def run_jobs(ctx: Context) -> None:
    counter = f"bench-jobs-{ctx.run_id}:done"
    client = redis_client(Settings.from_env({}, amqp_url=ctx.servers.amqp_url,
                                            redis_url=ctx.servers.redis_url))
    trials: list[Trial] = []
    plan: list[tuple[str, Callable[[], Trial]]] = [
        ("liftline", lambda: _liftline(ctx, counter, client, many=True)),
        ("liftline-1by1", lambda: _liftline(ctx, counter, client, many=False)),
    ]
    missing = [m for m in ("celery", "dramatiq") if not _installed(m)]
    if "celery" not in missing:
        plan.append(("celery", lambda: _celery(ctx, counter, client, confirm=True)))
    if "dramatiq" not in missing:
        plan.append(("dramatiq", lambda: _dramatiq(ctx, counter, client, confirm=True)))
    if ctx.sizes.jobs_unconfirmed:
        if "celery" not in missing:
            plan.append(("celery-noconfirm",
                         lambda: _celery(ctx, counter, client, confirm=False)))
        if "dramatiq" not in missing:
            plan.append(("dramatiq-noconfirm",
                         lambda: _dramatiq(ctx, counter, client, confirm=False)))
    saved_env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_PEER_")}
    try:
        for key, run in plan:
            try:
                trials.append(run())
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                say(f"jobs: {key} failed: {exc!r}")
                ctx.results.errors[f"jobs {key}"] = repr(exc)
    finally:
        for k in [k for k in os.environ if k.startswith("BENCH_PEER_")]:
            del os.environ[k]
        os.environ.update(saved_env)
        with contextlib.suppress(redis.RedisError):
            client.delete(counter)
        client.close()
        ctx.detail("jobs", jobs=ctx.sizes.jobs, concurrency=CONCURRENCY,
                   trials=[trial_dict(t) for t in trials], missing=missing)
    figures(ctx, trials, missing)
