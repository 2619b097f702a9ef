"""The dashboard in a real browser, on a stack under load, and its API's token gate.

Headless Chromium (Debian's, through Playwright) opens ``/dashboard`` of a real
ingest service in front of three workers taking writes, and reads what the page
rendered: the partition rows, the member count (before and after a worker is
SIGKILLed), a chart's points, and the outcome of a dead job replayed by a click.
Screenshots go to ``$LIFTLINE_TEST_SCREENSHOTS`` (the README's come from
``LIFTLINE_TEST_SCREENSHOTS=docs/screenshots``), else to the test's tmp dir.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page, missing_browser
from helpers import run_liftline, wait_until
from http_ingest import Http, Servers
from pipeline import REPO, PacedLoad, Workers, worker_env

from liftline import Producer, Settings
from liftline.cluster.registry import live_members
from liftline.jobs.client import JobClient
from liftline.procs import spawn, terminate
from liftline.servers.base import free_port
from liftline.store.keys import Keys

TOKEN = "dash-token-1"
APP = "jobapp:app"
RATE = 3000  # writes/s offered while the page is watched (2 cores: chromium needs some)


def screenshot_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("LIFTLINE_TEST_SCREENSHOTS")
    out = (REPO / chosen) if chosen and not os.path.isabs(chosen) else Path(chosen or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def rows(page: Any) -> list[dict[str, str]]:
    """The partition table as the page shows it: partition, primary, standbys, lag."""
    return page.eval_on_selector_all("#partitions tbody tr", """trs => trs.map(tr => ({
        partition: tr.dataset.partition, primary: tr.cells[1].textContent,
        standbys: tr.cells[2].textContent, epoch: tr.cells[3].textContent,
        tail: tr.cells[6].textContent}))""")


def text(page: Any, selector: str) -> str:
    return str(page.inner_text(selector)).strip()


@pytest.mark.timeout(240)
@pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))
def test_dashboard_in_a_browser_on_a_stack_under_load(settings: Settings, endpoints,
                                                     redis_client, tmp_path: Path) -> None:
    began = time.monotonic()
    fast = settings.replace(heartbeat_s=0.3, member_ttl_s=2.0, replicas=2, linger_ms=5,
                            job_delivery_limit=2, job_key_queues=4, job_result_ttl_s=120,
                            management_url=endpoints.management_url or "")
    shots = screenshot_dir(tmp_path)
    keys = Keys(fast.cluster)
    pool = Workers(fast, redis_client, tmp_path)
    servers = Servers(tmp_path)
    autoscaler = None
    try:
        for _ in range(3):
            pool.start(app=APP, wait=False)
        ingest = servers.start(fast, ingest_tokens=TOKEN)
        wait_until(lambda: len(live_members(redis_client, keys)) == 3, 60, message="3 workers")
        # A real autoscaler, in dry run (it decides and records, the pool stays).
        autoscaler = spawn([sys.executable, "-m", "liftline", "autoscale", "--dry-run",
                            "--min", "1", "--max", "6", "--target", "1500", "--interval", "1"],
                           env=worker_env(fast), log_path=tmp_path / "autoscale.log", cwd=REPO)
        base = ingest.url
        # The service has tokens: the page needs none, its data and the replay do.
        anonymous = Http(base)
        assert anonymous.get("/dashboard").status == 200
        refused = anonymous.post("/dashboard/api/replay", {"job_id": "x"})
        assert refused.status == 401 and refused.body["error"] == "unauthorized", refused
        assert anonymous.get("/dashboard/api/view").status == 401
        anonymous.close()

        flag = f"dash-{fast.cluster}"
        with JobClient(fast) as jobs:
            dead_job = jobs.enqueue("until_fixed", flag=flag).id
        requests: list[str] = []
        with Producer(fast) as producer, PacedLoad(producer, RATE, max_seconds=150) as load, \
                chromium_page() as page:
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{base}/dashboard")
            page.wait_for_selector("#token-form:not([hidden])")
            page.fill("#token", TOKEN)
            page.click("#token-form button")

            # Every partition's row, three members, and a writes/s chart with points.
            page.wait_for_function("() => document.querySelectorAll('#partitions tbody tr')"
                                   ".length === 8")
            page.wait_for_function("() => document.getElementById('member-count')"
                                   ".textContent === '3'")
            # A dozen points (one a second), so the screenshot shows a line.
            page.wait_for_function("() => +document.getElementById('chart-writes')"
                                   ".dataset.points >= 12", timeout=45_000)
            shown = rows(page)
            assert [r["partition"] for r in shown] == [str(p) for p in range(8)]
            members = set(live_members(redis_client, keys))
            assert all(r["primary"] in members for r in shown), shown
            assert all(r["standbys"] in members for r in shown), shown  # R=2: one standby
            drawn = page.get_attribute("#chart-writes polyline", "points") or ""
            assert len(drawn.split()) >= 12, drawn
            assert load.acked > 0 and not load.errors, load.errors
            writes_now = float(text(page, "#writes-now").replace(",", ""))
            assert writes_now > 0, "the page shows writes/s under load"
            page.wait_for_function("() => +document.getElementById('chart-workers')"
                                   ".dataset.points >= 4")
            assert text(page, "#autoscaler-last").startswith("Last decision (dry-run")
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            # SIGKILL the primary of partition 0: the page counts two members, and
            # every partition gets a live primary other than the victim.
            victim = shown[0]["primary"]
            os.kill(int(redis_client.hget(keys.member(victim), "pid")), signal.SIGKILL)
            page.wait_for_function("() => document.getElementById('member-count')"
                                   ".textContent === '2'", timeout=30_000)

            def failed_over() -> list[dict[str, str]] | None:
                now = rows(page)
                ok = all(r["primary"] not in (victim, "none") for r in now)
                return now if ok and len(now) == 8 else None

            after = wait_until(failed_over, 30, interval_s=0.2, message="new primaries shown")
            assert victim not in {r["primary"] for r in after}
            page.screenshot(path=str(shots / "dashboard-failover.png"), full_page=True)

            # The dead job: fix what it needs, click its Replay button, and the
            # page follows it to success.
            row = f"#dead tbody tr[data-job='{dead_job}']"
            page.wait_for_selector(row, timeout=30_000)
            redis_client.set(f"ll-test:{flag}", 1)
            page.click(f"{row} button.replay")
            page.wait_for_selector(f"#watched tbody tr[data-job='{dead_job}']"
                                   "[data-state='succeeded']", timeout=30_000)
            assert "replayed" in text(page, "#replay-message")
            assert page.query_selector(row) is None, "a replayed job leaves the dead list"
            page.locator("#job-names").scroll_into_view_if_needed()
            page.locator("section:has(#job-names)").screenshot(
                path=str(shots / "dashboard-jobs.png"))
            assert not load.errors, load.errors
        with JobClient(fast) as jobs:
            record = jobs.status.get(dead_job)
        assert record is not None and record["state"] == "succeeded", record
        assert record["result"] == "fixed"
        # Self-contained: the page asked nothing of any other origin.
        assert requests and all(u.startswith(base + "/") for u in requests), requests
        print(f"\ndashboard browser test: {load.achieved():,.0f} writes/s offered load, "
              f"{time.monotonic() - began:.1f}s; screenshots in {shots}")
    finally:
        if autoscaler is not None:
            terminate(autoscaler, 10)
        servers.stop_all()
        pool.stop_all()


class DashboardProcess:
    """``liftline dashboard`` on a free port, stopped (by PID) after the test."""

    def __init__(self, settings: Settings, log_dir: Path, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "dashboard.log"
        self.proc = spawn([sys.executable, "-m", "liftline", "dashboard", "--port",
                           str(self.port), *args], env=worker_env(settings),
                          log_path=self.log_path, cwd=REPO)

    def wait_ready(self) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_until(up, 30, interval_s=0.1, message="liftline dashboard")

    def stop(self) -> int | None:
        return terminate(self.proc, 10)


def poll_view(url: str, token: str, times: int) -> list[tuple[int, float]]:
    """``times`` polls of the view, 0.5 s apart: (reading number, seconds to answer) each."""
    client = Http(url, token=token)
    try:
        out = []
        for _ in range(times):
            began = time.monotonic()
            answer = client.get("/dashboard/api/view")
            assert answer.status == 200, answer
            out.append((answer.body["reading"], time.monotonic() - began))
            time.sleep(0.5)
        return out
    finally:
        client.close()


def test_liftline_dashboard_serves_the_page_and_gates_its_api(settings: Settings,
                                                              tmp_path: Path) -> None:
    help_text = run_liftline(["dashboard", "--help"], check=True, cwd=REPO).stdout
    for option in ("--host", "--port", "--tokens", "--management-url", "LIFTLINE_DASHBOARD_PORT",
                   "LIFTLINE_INGEST_TOKENS", "/dashboard"):
        assert option in help_text, option
    served = DashboardProcess(settings, tmp_path, ["--tokens", "t-one,t-two"])
    anonymous, allowed, wrong = (Http(served.url, token=t) for t in (None, "t-two", "wrong"))
    try:
        served.wait_ready()
        page = anonymous.get("/dashboard")
        assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "<script src" not in page.body and "<link" not in page.body
        for method, path, body in (("GET", "/dashboard/api/view", None),
                                   ("POST", "/dashboard/api/replay", {"job_id": "j1"})):
            refused = anonymous.request(method, path, body)
            assert refused.status == 401, refused
            assert refused.body["error"] == "unauthorized"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        assert wrong.get("/dashboard/api/view").status == 401
        view = allowed.get("/dashboard/api/view")
        assert view.status == 200, view
        assert view.body["cluster"] == settings.cluster and view.body["unreachable"] == []
        assert len(view.body["partitions"]) == settings.partitions
        # Twenty viewers polling together share the readings: at most one a second.
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(20) as viewers:
            polls = list(viewers.map(lambda n: poll_view(served.url, "t-two", 4), range(20)))
        took = time.monotonic() - began
        readings = {n for answers in polls for n, _ in answers}
        waits = sorted(wait for answers in polls for _, wait in answers)
        assert len(readings) <= took / 1.0 + 2, (len(readings), took)
        print(f"\n20 viewers x 4 polls in {took:.1f}s: {len(readings)} readings; answer "
              f"median {waits[len(waits) // 2] * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms")
        unknown = allowed.post("/dashboard/api/replay", {"job_id": "no-such-job"})
        assert unknown.status == 404 and unknown.body["error"] == "not_found", unknown
        typeless = allowed.request("POST", "/dashboard/api/replay", raw=b'{"job_id": "j"}',
                                   headers={"Content-Type": "text/plain"})
        assert typeless.status == 415, typeless
    finally:
        for client in (anonymous, allowed, wrong):
            client.close()
        # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught: -15.
        assert served.stop() in (0, -signal.SIGTERM), served.log_path.read_text()
