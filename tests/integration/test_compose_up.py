"""`docker compose up` of the repository's docker-compose.yml, where a Docker engine
answers (skipped otherwise): a write through the ingest service is applied by a
worker, and the autoscaler's metrics answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from liftline.servers import docker_engine_answers

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None or not docker_engine_answers(),
    reason="needs a Docker engine (only the docker client is here)")


def compose(*args: str, timeout_s: float = 600) -> str:
    return subprocess.run(["docker", "compose", "-p", "liftline-test", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s,
                          check=True).stdout


def http(url: str, body: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_compose_stack_accepts_a_write_and_exports_the_backlog() -> None:
    try:
        compose("up", "-d", "--build", "--wait", "--wait-timeout", "300")
        ticket = http("http://127.0.0.1:8080/v1/writes",
                      b'{"op": "incr", "key": "lift:21", "value": 3}')["ticket"]
        value = http(f"http://127.0.0.1:8080/v1/keys/lift:21?after={ticket}")["value"]
        assert value == 3
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5) as a:
                    text = a.read().decode()
                if "liftline_workers_current" in text:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "autoscaler metrics never answered"
            time.sleep(1)
        assert 'liftline_backlog{cluster="default",kind="stream",partition="0"}' in text
    finally:
        compose("down", "-v", "--timeout", "60")
