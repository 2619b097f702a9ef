"""Autoscaler parts that need no servers: the write count of a stream entry, the
tail bookkeeping, the Prometheus text and endpoint, the command and compose scalers."""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from liftline import codec
from liftline.autoscale.backlog import Backlog
from liftline.autoscale.metrics import MetricsServer, render
from liftline.autoscale.policy import Policy, PolicyConfig
from liftline.autoscale.scalers import CommandScaler, ComposeScaler, make_scaler
from liftline.autoscale.streams import _Tail, writes_in
from liftline.errors import ConfigError, ScaleError
from liftline.settings import Settings


def test_writes_in_reads_the_batch_header_only() -> None:
    for n in (1, 15, 16, 2000, 70_000):
        writes = [codec.pack_write("incr", f"k{i}", 1) for i in range(n)]
        assert writes_in(codec.pack_batch("p" * 64, 2**40, writes)) == n
    assert writes_in(b"\xff\x00garbage") == 1  # a dead letter still costs an apply
    assert writes_in(codec.pack({"not": "a batch"})) == 1


def test_tail_counts_writes_after_an_offset_and_trims() -> None:
    tail = _Tail()
    for offset in range(10, 10_010):
        tail.add(offset, 3)
    tail.add(500, 99)  # a redelivery after resubscribing: ignored
    assert tail.writes_after(10_009) == 0
    assert tail.writes_after(10_008) == 3
    assert tail.writes_after(9) == 30_000
    assert tail.writes_after(5) is None  # entries before the first one read are unknown
    tail.trim(8000)
    assert tail.writes_after(9000) == 3 * 1009
    assert tail.writes_after(8000) == 3 * 2009


def test_metrics_text_has_the_backlog_and_worker_gauges() -> None:
    backlog = Backlog(streams={0: 120, 1: 0}, entries={0: 2, 1: 0},
                      jobs={"liftline.c.jobs": 7}, jobs_unacked=3, missing={1: 39})
    decision = Policy(PolicyConfig(target=100)).decide(0.0, 1, backlog.stream_total,
                                                       backlog.job_total)
    text = render("c", backlog, decision, Counter({"up": 1}))
    lines = set(text.splitlines())
    assert 'liftline_backlog{cluster="c",kind="stream",partition="0"} 120' in lines
    assert 'liftline_backlog{cluster="c",kind="jobs",queue="liftline.c.jobs"} 7' in lines
    assert 'liftline_backlog{cluster="c",kind="jobs_unacked",queue="all"} 3' in lines
    assert 'liftline_workers_desired{cluster="c"} 2' in lines
    # Writes missing from a stream (gaps in a producer's sequence), 0 where there are none.
    assert 'liftline_missing_writes{cluster="c",partition="0"} 0' in lines
    assert 'liftline_missing_writes{cluster="c",partition="1"} 39' in lines
    assert 'liftline_workers_current{cluster="c"} 1' in lines
    assert "# TYPE liftline_backlog gauge" in lines
    for line in lines:  # every sample line is `name{labels} number`
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_metrics_endpoint_serves_text_json_and_health() -> None:
    server = MetricsServer("127.0.0.1", 0, stale_after_s=60).start()
    try:
        server.publish("liftline_workers_desired 2\n", {"backlog": 5})
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            assert answer.read() == b"liftline_workers_desired 2\n"
        with urllib.request.urlopen(f"{base}/backlog", timeout=5) as answer:
            assert json.load(answer) == {"backlog": 5}
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_command_scaler_runs_the_command_with_n(tmp_path: Path) -> None:
    out = tmp_path / "asked"
    script = _script(tmp_path / "scale.sh", f'echo "$1" >> {out}\n')
    scaler = CommandScaler(f"{script} {{n}}", start=1)
    scaler.scale_to(4)
    scaler.scale_to(2)
    assert out.read_text().split() == ["4", "2"]
    assert scaler.current() == 2
    failing = CommandScaler(f"{_script(tmp_path / 'bad.sh', 'echo no >&2; exit 3')} {{n}}", 1)
    with pytest.raises(ScaleError, match="exited with 3: no"):
        failing.scale_to(5)
    assert failing.current() == 1  # unchanged: the next decision asks again
    with pytest.raises(ConfigError, match="must contain"):
        CommandScaler("./scale.sh", 1)


def test_compose_scaler_runs_docker_compose_scale(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    # A stand-in `docker` on PATH: records its arguments, answers `ps` with two ids.
    _script(tmp_path / "docker", f'echo "$@" >> {calls}\n'
            'case "$*" in *" ps "*) printf "a1\\nb2\\n";; esac\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    scaler = make_scaler(Settings(autoscale_backend="compose", autoscale_service="worker"),
                         log_dir=tmp_path)
    assert isinstance(scaler, ComposeScaler)
    assert scaler.current() == 2
    scaler.scale_to(5)
    lines = calls.read_text().splitlines()
    assert lines[-1] == "compose up -d --no-deps --no-recreate --scale worker=5 worker"
    assert lines[0] == "compose ps -q --status running worker"
