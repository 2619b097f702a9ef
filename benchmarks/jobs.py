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
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pika
import pika.exceptions
import redis

from benchmarks.cluster import cleanup, redis_client, worker_env
from benchmarks.context import Context, write_side_report
from benchmarks.env import REPO, CpuMeter, cpu_seconds
from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from liftline.jobs import topology
from liftline.settings import Settings

CONCURRENCY = 8
CHUNK = 500
TARGET_VS_CELERY = 3.0
WORKER_READY_S = 60.0
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


# -- processes -----------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (Dramatiq forks its worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class PeerWorker:
    """A worker process of one of the three systems, in a session of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"jobs-worker-{name}.log"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid, *_descendants(self.pid)]

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} worker exited with code {self.proc.returncode}:\n"
                               f"{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (each system's graceful stop); SIGKILL to its process group after
        ``timeout_s``. Returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name} worker {self.pid} ignored SIGTERM for {timeout_s:.0f}s; "
                    "SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


class WorkerCpu:
    """CpuMeter over this run's processes, the worker's whole process tree as one."""

    def __init__(self, ctx: Context, worker: PeerWorker) -> None:
        self.worker = worker
        self.meter = CpuMeter(ctx.pids())
        self._tree0: dict[int, float] = {}

    def start(self) -> None:
        self.meter.start()
        self._tree0 = {p: cpu_seconds(p) or 0.0 for p in self.worker.pids()}

    def stop(self) -> dict[str, Any]:
        tree1 = {p: cpu_seconds(p) for p in self.worker.pids()}
        row = self.meter.stop()
        used = sum((now or 0.0) - self._tree0.get(p, 0.0) for p, now in tree1.items()
                   if now is not None)
        worker = used / row["wall_s"]
        row["worker"] = round(worker, 2)
        row["others"] = round(max(0.0, row["others"] - worker), 2)
        return row


# -- RabbitMQ helpers ----------------------------------------------------------
def _consumers(amqp_url: str, queue: str) -> int:
    """Consumers of ``queue`` (0 when it does not exist yet)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn.close()


def _wait_consuming(amqp_url: str, queue: str, worker: PeerWorker) -> float:
    began = time.monotonic()
    deadline = Deadline(WORKER_READY_S)
    while not deadline.passed():
        worker.check_alive()
        if _consumers(amqp_url, queue) > 0:
            return time.monotonic() - began
        time.sleep(0.1)
    raise RuntimeError(f"{worker.name} worker did not consume {queue} within "
                       f"{WORKER_READY_S:.0f}s:\n{worker.log_tail()}")


def _consumer_prefetch(management_url: str | None, queue: str) -> list[int] | None:
    """The prefetch_count of every consumer of ``queue`` as RabbitMQ applies it (the
    management API lists consumers after its stats interval, 5 s by default)."""
    if not management_url:
        return None
    from liftline.servers.base import management_get

    try:
        consumers = management_get(management_url, "/api/consumers") or []
    except Exception:  # noqa: BLE001 - a missing figure must not end the trial
        return None
    found = [int(c.get("prefetch_count", 0)) for c in consumers
             if isinstance(c, dict) and c.get("queue", {}).get("name") == queue]
    return sorted(found) or None


def _delete(amqp_url: str, queues: list[str], exchanges: list[str]) -> None:
    try:
        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except (pika.exceptions.AMQPError, OSError) as exc:
        say(f"jobs cleanup: RabbitMQ: {exc!r}")
        return
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = conn.channel()
                try:
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                    channel.close()
                except pika.exceptions.AMQPError:
                    pass
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            conn.close()


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
        ready_s = _wait_consuming(amqp_url, queue, worker)
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
        trial.consumer_prefetch = _consumer_prefetch(ctx.servers.management_url, queue)
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
        _delete(ctx.servers.amqp_url,
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
    submit = _one_at_a_time(module.noop.delay)

    try:
        _run_trial(ctx, trial, [sys.executable, *worker_cmd.split()[1:]],
                   {**_base_env(), **env}, queue, submit, counter, client)
    finally:
        with contextlib.suppress(Exception):
            module.app.close()
        _delete(ctx.servers.amqp_url, [queue], [queue])
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
    submit = _one_at_a_time(module.noop.send)

    try:
        _run_trial(ctx, trial, [sys.executable, *worker_cmd.split()[1:]],
                   {**_base_env(), **env}, queue, submit, counter, client)
    finally:
        with contextlib.suppress(Exception):
            module.broker.close()
        _delete(ctx.servers.amqp_url, [queue, f"{queue}.DQ", f"{queue}.XQ"], [])
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
                   trials=[_trial_dict(t) for t in trials], missing=missing)
    _figures(ctx, trials, missing)


def _trial_dict(t: Trial) -> dict[str, Any]:
    return {**vars(t), "enqueue_per_s": t.enqueue_per_s, "e2e_per_s": t.e2e_per_s,
            "drain_per_s": t.drain_per_s}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _figures(ctx: Context, trials: list[Trial], missing: list[str]) -> None:
    by_key = {t.key: t for t in trials}
    add = ctx.results.add
    for t in trials:
        add("jobs", f"{t.key}.enqueue", f"{t.key}: enqueue jobs/s ({t.submit_api})",
            t.enqueue_per_s, "jobs/s")
        fig = add("jobs", f"{t.key}.e2e", f"{t.key}: end to end jobs/s (first submit → "
                  f"all {t.submitted:,} done)", t.e2e_per_s, "jobs/s",
                  note="" if t.complete else f"only {t.done:,} done in time")
        if not t.complete:
            fig.passed = False
        if t.drain_per_s is not None:
            add("jobs", f"{t.key}.drain", f"{t.key}: jobs/s the worker finished after "
                "submitting ended (the worker alone)", t.drain_per_s, "jobs/s")
    ours = by_key.get("liftline")
    for peer in ("celery", "dramatiq"):
        theirs = by_key.get(peer)
        if ours is None or theirs is None:
            continue
        add("jobs", f"vs_{peer}.enqueue", f"liftline / {theirs.system}: enqueue rate",
            _ratio(ours.enqueue_per_s, theirs.enqueue_per_s), "ratio")
        add("jobs", f"vs_{peer}.e2e", f"liftline / {theirs.system}: end-to-end rate",
            _ratio(ours.e2e_per_s, theirs.e2e_per_s), "ratio",
            target=TARGET_VS_CELERY if peer == "celery" else None)
    md, js = write_side_report(ctx, "jobs", jobs_markdown(ctx, trials, missing))
    say(f"jobs: wrote {md} and {js}")
    ctx.results.notes.append(
        f"jobs scenario: tables, worker commands and what each system does about confirms "
        f"and acks in {md}.")


def _cell(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.0f}{unit}"


def jobs_markdown(ctx: Context, trials: list[Trial], missing: list[str]) -> str:
    m = ctx.results.meta
    by_key = {t.key: t for t in trials}
    lines = [
        "# Jobs: liftline vs Celery vs Dramatiq",
        "",
        f"- Date: {m.get('date', '?')}; command: `{m.get('command', '?')}`",
        f"- Machine: {m.get('machine', {}).get('nproc', '?')} cores (shared: see `others`); "
        f"RabbitMQ {m.get('versions', {}).get('rabbitmq', '?')}, "
        f"Redis {m.get('versions', {}).get('redis', '?')}; "
        f"{_versions()}",
        f"- Workload: {ctx.sizes.jobs:,} no-op jobs; the handler does one Redis `INCR` of a "
        "counter, and \"all done\" is that counter reaching N, for all three. One worker "
        f"process with {CONCURRENCY} handler threads each; the worker runs while jobs are "
        "submitted (from one thread of the benchmark process). A warm-up job runs first.",
        "- Results: Celery `ignore_result=True`, no result backend; Dramatiq without the "
        "Results middleware; liftline records each job's status and result in Redis "
        "(always on: queued at enqueue, running, succeeded).",
        "- Queues: liftline a quorum queue (its design); Celery and Dramatiq their default "
        "durable classic queues. Acks: liftline and Dramatiq ack after the handler returns; "
        "Celery acks on receipt (its default, `task_acks_late=False`). Prefetch asked for "
        f"at 8 threads: liftline {CONCURRENCY} (= concurrency; redelivered jobs go one at a "
        f"time through its suspects queue), Celery {CONCURRENCY * 4} (multiplier 4), Dramatiq "
        f"{CONCURRENCY * 2} (2 × threads); the table shows what RabbitMQ applied to the "
        "worker's consumer of the work queue (management API, read at the end of a trial; "
        "0 = no per-consumer limit: Celery sets its limit on the channel; n/a = the trial "
        "ended before the API listed the consumer).",
        "",
        "| System | Enqueue API | Publisher confirms | Enqueue s | Enqueue jobs/s | "
        "End to end s | End-to-end jobs/s | done when submitting ended | then jobs/s "
        "(worker alone) | consumer prefetch (RabbitMQ) | worker CPU (cores) | others CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in trials:
        e2e = f"{t.e2e_s:.2f}" if t.e2e_s is not None and t.complete else \
            f"{t.done:,} done in time"
        lines.append(
            f"| {t.system} (`{t.key}`) | {t.submit_api} | {t.confirms} | "
            f"{t.enqueue_s if t.enqueue_s is not None else 'n/a'} | "
            f"{_cell(t.enqueue_per_s)} | {e2e} | {_cell(t.e2e_per_s)} | "
            f"{t.done_at_submit_end:,} of {t.submitted:,} | {_cell(t.drain_per_s)} | "
            f"{', '.join(map(str, t.consumer_prefetch or [])) or 'n/a'} | "
            f"{t.cpu.get('worker', 0):.2f} | "
            f"{t.cpu.get('others', 0):.2f} |")
    ours = by_key.get("liftline")
    ratio_lines = []
    for peer in ("celery", "dramatiq", "celery-noconfirm", "dramatiq-noconfirm"):
        theirs = by_key.get(peer)
        if ours is None or theirs is None:
            continue
        e2e = _ratio(ours.e2e_per_s, theirs.e2e_per_s)
        enq = _ratio(ours.enqueue_per_s, theirs.enqueue_per_s)
        verdict = ""
        if peer == "celery":
            verdict = " — target ≥ 3×: " + (
                "n/a" if e2e is None else ("PASS" if e2e >= TARGET_VS_CELERY else "**FAIL**"))
        ratio_lines.append(
            f"| liftline / {theirs.system} (`{peer}`) | "
            f"{'n/a' if enq is None else f'{enq:.2f}×'} | "
            f"{'n/a' if e2e is None else f'{e2e:.2f}×'}{verdict} |")
    if ratio_lines:
        lines += ["", "| Ratio (liftline = `liftline`, enqueue_many) | Enqueue | End to end |",
                  "|---|---:|---:|", *ratio_lines]
    lines += ["", "## CPU while measuring (average cores; submit + drain of each trial)", "",
              "| Trial | wall s | bench | worker | rabbitmq | redis | others | machine |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in trials:
        c = t.cpu
        lines.append(f"| {t.key} | {c.get('wall_s', 0):.1f} | " + " | ".join(
            f"{c.get(n, 0):.2f}" for n in ("bench", "worker", "rabbitmq", "redis", "others",
                                           "machine")) + " |")
    lines += ["", "## Worker commands (run from the repository root, with the venv's python)",
              "",
              "Each gets `BENCH_PEER_REDIS_URL` and `BENCH_PEER_COUNTER` (and Celery/Dramatiq "
              "`BENCH_PEER_AMQP_URL`, `BENCH_PEER_QUEUE`, `BENCH_PEER_CONFIRM`) in its "
              "environment; liftline gets `LIFTLINE_AMQP_URL`, `LIFTLINE_REDIS_URL`, "
              "`LIFTLINE_CLUSTER`, `LIFTLINE_PARTITIONS`.", ""]
    seen = set()
    for t in trials:
        if t.worker_cmd not in seen:
            seen.add(t.worker_cmd)
            lines.append(f"- {t.system}: `{t.worker_cmd}`")
    lines += ["", "Job modules: `benchmarks/peers/liftline_jobs.py`, "
              "`benchmarks/peers/celery_app.py`, `benchmarks/peers/dramatiq_app.py`."]
    if missing:
        lines += ["", f"Not installed, not measured: {', '.join(missing)} "
                  "(`pip install -e '.[bench]'`)."]
    failed = [t for t in trials if not t.complete]
    for t in failed:
        lines.append(f"- `{t.key}` did not finish: {t.done:,} of {t.submitted:,} done.")
    return "\n".join(lines) + "\n"


def _versions() -> str:
    out = []
    for name in ("celery", "kombu", "dramatiq", "pika"):
        try:
            from importlib.metadata import version

            out.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - not installed
            out.append(f"{name} absent")
    return ", ".join(out)
