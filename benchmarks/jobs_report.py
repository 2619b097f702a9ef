"""The jobs scenario's figures and its report, made from the trials that ran.

``figures`` adds each trial's enqueue rate, end-to-end rate and (when it can be
measured) drain rate to the run's results, plus liftline's ratios to Celery and
Dramatiq, judging the end-to-end ratio to Celery against ``TARGET_VS_CELERY``. A trial
that did not finish has its end-to-end figure marked failed. It then writes
``jobs.md`` and ``jobs.json`` beside latest.md. ``jobs_markdown`` renders that report:
the setup, one row per trial, the ratios, each trial's CPU and the worker commands,
with n/a for a figure that was not measured. ``trial_dict`` is a trial as plain data
for the run's details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.context import Context, write_side_report
from benchmarks.jobs_peers import CONCURRENCY
from benchmarks.progress import say

if TYPE_CHECKING:
    from benchmarks.jobs import Trial

TARGET_VS_CELERY = 3.0


def trial_dict(t: Trial) -> dict[str, Any]:
    return {**vars(t), "enqueue_per_s": t.enqueue_per_s, "e2e_per_s": t.e2e_per_s,
            "drain_per_s": t.drain_per_s}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def figures(ctx: Context, trials: list[Trial], missing: list[str]) -> None:
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
        f"at 8 threads: liftline {CONCURRENCY * 4} (4 × concurrency; redelivered jobs go one at a "
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
