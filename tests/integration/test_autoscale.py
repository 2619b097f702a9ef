"""The autoscaler against real servers: the backlog it reads, the metrics it serves,
the decision `liftline status` shows, and `liftline up --autoscale`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import run_liftline, wait_until
from pipeline import REPO, worker_env

from liftline import Producer, Settings
from liftline.autoscale import record
from liftline.autoscale.backlog import BacklogReader
from liftline.autoscale.loop import Autoscaler
from liftline.autoscale.scalers import DryRun
from liftline.jobs.client import JobClient
from liftline.servers import free_port


def test_backlog_counts_writes_not_applied_and_jobs_not_done(settings: Settings, workers,
                                                             redis_client) -> None:
    """No worker yet: every write and job is backlog, counted in writes (not batches)."""
    with Producer(settings) as producer:
        futures = [producer.submit("incr", f"k{i % 500}", 1) for i in range(30_000)]
        tickets = [f.result(30) for f in futures]
        late = producer.incr("late", 1)  # one more entry, of one write
    with JobClient(settings) as jobs:
        jobs.enqueue_many([("noop", {}, None, None) for _ in range(120)])
        jobs.enqueue("noop", key="user:1")
    reader = BacklogReader(settings)
    try:
        backlog = reader.read()
        assert backlog.stream_total == 30_001
        assert sum(backlog.entries.values()) < 30_001 / 10  # batches, not writes
        assert backlog.jobs[f"liftline.{settings.cluster}.jobs"] == 120
        assert sum(backlog.jobs.values()) == 121 and backlog.jobs_unacked == 0
        assert backlog.total == 30_122 and backlog.members == 0
        assert {p for p, n in backlog.streams.items() if n} == \
            {t.partition for t in tickets} | {late.partition}
        workers.start(app="jobapp:app")
        wait_until(lambda: reader.read().total == 0, 60, interval_s=0.2,
                   message="the worker to apply every write and run every job")
    finally:
        reader.close()


def test_decisions_are_exported_recorded_and_shown_by_status(settings: Settings,
                                                             redis_client) -> None:
    with Producer(settings) as producer:
        for f in [producer.submit("set", f"s{i}", i) for i in range(12_000)]:
            f.result(30)
    port = free_port()
    tuned = settings.replace(autoscale_target=5000, autoscale_max=4, autoscale_interval_s=0.2,
                             autoscale_metrics_port=port)
    scaler = DryRun(start=0)
    autoscaler = Autoscaler(tuned, scaler, dry_run=True)
    autoscaler.metrics.start()  # type: ignore[union-attr]
    try:
        decision = autoscaler.tick()
        assert decision is not None
        assert (decision.backlog, decision.current, decision.desired, decision.action) == (
            12_000, 0, 3, "up")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        label = f'{{cluster="{settings.cluster}"}}'
        assert f"liftline_workers_desired{label} 3" in text
        assert f"liftline_workers_current{label} 0" in text
        streams = [line for line in text.splitlines()
                   if line.startswith("liftline_backlog{") and 'kind="stream"' in line]
        assert len(streams) == settings.partitions
        assert sum(int(line.rsplit(" ", 1)[1]) for line in streams) == 12_000
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/backlog", timeout=5) as answer:
            assert json.load(answer)["backlog"] == 12_000
    finally:
        autoscaler.close()
    state = record.load(redis_client, settings.cluster)
    assert state is not None and state["last"]["desired"] == 3
    assert state["change"]["reason"].startswith("backlog 12000 needs 3 worker(s)")
    env = worker_env(settings)
    shown = run_liftline(["status"], env=env, cwd=REPO, check=True).stdout
    line = next(x for x in shown.splitlines() if x.startswith("autoscaler"))
    assert "dry run" in line and "up - backlog 12000" in line and "desired 3" in line
    as_json = json.loads(run_liftline(["status", "--json"], env=env, cwd=REPO,
                                      check=True).stdout)
    assert as_json["autoscaler"]["last"]["backlog"] == 12_000


def test_up_with_autoscale_runs_the_pool_and_stops_it(settings: Settings, redis_client,
                                                      tmp_path: Path) -> None:
    """`liftline up --autoscale 1:2` on servers given by URL: MIN workers, status, clean stop."""
    env = worker_env(settings.replace(autoscale_interval_s=0.5))
    env["LIFTLINE_DATA_DIR"] = str(tmp_path / "data")
    with open(tmp_path / "up.log", "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "liftline", "up", "--no-ingest",
                               "--autoscale", "1:2"], env=env, cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "liftline ready" in (tmp_path / "up.log").read_text()
                   or up.poll() is not None, 90, message="liftline up ready")
        text = (tmp_path / "up.log").read_text()
        assert "autoscaler ready: 1..2 workers, 1 running" in text, text
        state = record.load(redis_client, settings.cluster)
        assert state is not None and state["pool"]["backend"] == "local"
        assert len(state["pool"]["pids"]) == 1
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        code = up.wait(90)
    text = (tmp_path / "up.log").read_text()
    assert code == 0, text
    assert "autoscaler and its workers stopped" in text
    worker_pid = state["pool"]["pids"][0]
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    logs = list((tmp_path / "data" / "logs" / "workers").glob("worker-*.log"))
    assert any("stopped" in log.read_text() for log in logs)
