"""`liftline up`: servers from the system binaries, a worker, and the CLI against them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    Up,
    clean_env,
    http_write_and_read,
    missing_local_binaries,
    run_liftline,
    wait_until,
)
from pipeline import REPO

from liftline.servers.base import free_ports
from liftline.servers.local import pid_alive

_env = clean_env


def cli(args: list[str], urls: list[str], cwd: Path,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_liftline([*args, *urls], env=_env(), cwd=cwd, check=check)


@pytest.mark.skipif(missing_local_binaries() is not None, reason="needs local binaries")
def test_up_serves_the_cli_refuses_a_second_up_and_stops_cleanly(tmp_path: Path):
    amqp_port, redis_port, ingest_port = free_ports(3)
    urls = [f"--amqp-url=amqp://guest:guest@127.0.0.1:{amqp_port}/%2F",
            f"--redis-url=redis://127.0.0.1:{redis_port}/0"]
    data_dir = tmp_path / "data"
    up = Up([*urls, "--data-dir", str(data_dir), "--ingest-port", str(ingest_port)], REPO)
    try:
        up.wait_for("liftline ready", 120)
        out = up.output()
        for component in ("rabbitmq ready", "redis ready", "topology ready", "worker ready",
                          f"ingest ready: http://127.0.0.1:{ingest_port}"):
            assert component in out, out
        assert http_write_and_read(ingest_port, {"op": "set", "key": "gate:7",
                                                 "value": "open"}) == "open"

        ticket = cli(["put", "skier:812", '{"lift": 21}'], urls, REPO).stdout.strip()
        assert ticket.count(".") == 2
        cli(["incr", "resort:3:rides", "1"], urls, REPO)
        cli(["incr", "resort:3:rides", "2"], urls, REPO)
        got = cli(["get", "skier:812", "--after", ticket], urls, REPO).stdout
        assert json.loads(got) == {"lift": 21}
        rides = wait_until(
            lambda: cli(["get", "resort:3:rides"], urls, REPO).stdout.strip() == "3", 10)
        assert rides
        status = json.loads(cli(["status", "--json"], urls, REPO).stdout)
        assert status["partitions"] == 16 and len(status["members"]) == 1
        assert sum(1 for row in status["partition_state"] if row["primary"]) == 16
        table = cli(["status"], urls, REPO).stdout
        assert "APPLIED" in table and "MARGIN" in table

        missing = cli(["get", "nobody"], urls, REPO, check=False)
        assert missing.returncode == 6 and "not found" in missing.stderr

        second = subprocess.run([sys.executable, "-m", "liftline", "up", *urls,
                                 "--data-dir", str(data_dir)], cwd=REPO, env=_env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "already running" in second.stderr
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGTERM)
        code = up.proc.wait(90)
        up.reader.join(10)
        assert up.proc.stdout is not None
        up.proc.stdout.close()
    out = up.output()
    assert code == 0, out
    assert "rabbitmq stopped" in out and "redis stopped" in out
    pids = [int(re.search(r"\(pid (\d+)", w).group(1)) for w in out.splitlines() if "(pid " in w]
    assert pids and not any(pid_alive(pid) for pid in pids)
    # The data survives: Redis' append-only file is in the data directory.
    assert any((data_dir / "redis").rglob("*.aof*"))
