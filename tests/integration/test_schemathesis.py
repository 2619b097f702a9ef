"""schemathesis against ``/openapi.json``, with all its checks, on real servers.

Two services: the ski-resort app with bearer tokens configured (so the
document declares them, and schemathesis checks that requests without a token
are refused), and the jobs test app without tokens (so ``POST /v1/jobs`` is
there, with each job's arguments). What the run is told, and why:

- ``not_a_server_error`` also accepts 504: ``?after=<ticket>`` with a ticket no
  producer ever issued (schemathesis draws them) waits ``timeout_ms`` and then
  answers 504 Gateway Timeout with the owner's position, as documented.
- ``timeout_ms`` is fixed at 50 ms, so those waits stay short (the server
  honours up to 60 s).
- One worker thread (``-w 1``): concurrent draws crash CPython 3.11's
  ``ast.parse`` inside hypothesis' strategy printing ("AST constructor recursion
  depth mismatch"), an error of the test tool, not of the service.

No check is left off.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import wait_until
from http_ingest import Http

CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "504"]

[parameters]
"query.timeout_ms" = 50
"""


def owners_ready(url: str, token: str | None = None) -> None:
    """Every partition has its owner (a fresh worker claims them within a heartbeat or two)."""
    client = Http(url, token=token)
    try:
        wait_until(lambda: all(client.get(f"/v1/keys/probe{n}").status == 404 for n in range(64)),
                   30, message="owners of every partition")
    finally:
        client.close()


def schemathesis(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"{url}/openapi.json", "--checks", "all", "-w", "1", "--max-examples", "25",
            "--seed", "20261202", "--request-timeout", "10", "--no-color", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=400, cwd=tmp_path)


def _passed(result: subprocess.CompletedProcess[str]) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-12000:]
    assert " passed" in out and "failures" not in out.split("SUMMARY")[-1], out[-4000:]


def test_schemathesis_all_checks_ski_app_with_tokens(settings, workers, ingest, tmp_path):
    workers.start(app="examples.skiresort:app")
    server = ingest.start(settings, app="examples.skiresort:app", ingest_tokens="tok-a")
    owners_ready(server.url, "tok-a")
    _passed(schemathesis(server.url, tmp_path, "-H", "Authorization: Bearer tok-a"))


def test_schemathesis_all_checks_jobs_app(settings, workers, ingest, tmp_path):
    workers.start(app="jobapp:app", args=("--partitions-only",))  # jobs queue, none runs
    server = ingest.start(settings, app="jobapp:app")
    owners_ready(server.url)
    _passed(schemathesis(server.url, tmp_path))
