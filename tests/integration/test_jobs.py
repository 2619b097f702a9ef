"""Background jobs on real RabbitMQ and Redis, run by real worker processes."""

from __future__ import annotations

import os

import pika
import pytest
from helpers import run_liftline, wait_until

from liftline import codec
from liftline.errors import InvalidWrite, NotFound, Timeout
from liftline.jobs.client import JobClient, JobFailed
from liftline.jobs.dead import list_dead, replay
from liftline.jobs.topology import JobNames

APP = "jobapp:app"


@pytest.fixture
def job_settings(settings):
    return settings.replace(job_result_ttl_s=3, job_delivery_limit=2, job_key_queues=4)


@pytest.fixture
def client(job_settings):
    import jobapp

    with JobClient(job_settings, jobapp.app) as c:
        yield c


def test_success_result_and_expiry(client, job_workers):
    job_workers.start(app=APP)
    handle = client.enqueue("echo", value=[1, "two"])
    assert handle.result(timeout=20) == {"value": [1, "two"], "attempt": 1, "job_id": handle.id}
    assert handle.status()["state"] == "succeeded"
    # Results expire after job_result_ttl_s (3 s here).
    wait_until(lambda: client.status.get(handle.id) is None, 10, message="result expiry")
    with pytest.raises(NotFound):
        handle.result(timeout=1)


def test_fails_twice_then_succeeds_with_bounded_backoff(client, job_workers, redis_client):
    job_workers.start(app=APP)
    handle = client.enqueue("flaky", log="flaky1")
    assert handle.result(timeout=30) == 3
    runs = [x.decode().split(":") for x in redis_client.lrange("ll-test:flaky1", 0, -1)]
    assert [int(a) for a, _ in runs] == [1, 2, 3]
    times = [float(t) for _, t in runs]
    # Delay before attempt n+1 is in [ceiling/2, ceiling], ceiling = min(1.0, 0.2·2^(n-1)),
    # rounded down to the delay ladder (at most 20% early), plus delivery time.
    for n, (before, after) in enumerate(zip(times, times[1:], strict=False), start=1):
        ceiling = min(1.0, 0.2 * 2 ** (n - 1))
        assert 0.8 * ceiling / 2 <= after - before <= ceiling + 1.0, (n, after - before)
    record = handle.status()
    assert record["attempt"] == 3 and record["state"] == "succeeded"


def test_always_failing_job_goes_dead_and_can_be_replayed(client, job_settings, job_workers,
                                                          redis_client):
    job_workers.start(app=APP)
    handle = client.enqueue("until_fixed", flag="fix1")
    with pytest.raises(JobFailed, match="after 3 attempt"):
        handle.result(timeout=30)
    assert redis_client.lrange("ll-test:fix1:runs", 0, -1) == [b"1", b"2", b"3"]
    dead = wait_until(lambda: [d for d in list_dead(job_settings) if d["id"] == handle.id], 10)
    assert dead[0]["job"] == "until_fixed" and "not fixed yet" in dead[0]["error"]
    assert dead[0]["attempts"] == 3
    redis_client.set("ll-test:fix1", 1)
    assert replay(job_settings, [handle.id]) == [handle.id]
    assert handle.result(timeout=30) == "fixed"
    assert not [d for d in list_dead(job_settings) if d["id"] == handle.id]


def test_a_timeout_counts_as_a_failure(client, job_workers):
    job_workers.start(app=APP)
    handle = client.enqueue("slow")
    with pytest.raises(JobFailed, match="no result within 0.5s"):
        handle.result(timeout=20)


def test_stuck_handlers_are_replaced_and_other_jobs_keep_running(client, job_workers,
                                                                 redis_client):
    """Two handler threads, both stuck past their timeout: the jobs behind them
    still run at once, on the replacement threads."""
    worker = job_workers.start(app=APP, args=("--concurrency", "2"))
    gate = f"gate-{os.urandom(3).hex()}"
    stuck = [client.enqueue("stuck", gate=gate) for _ in range(2)]
    wait_until(lambda: redis_client.llen(f"ll-test:{gate}:began") == 2, 20,
               message="both stuck handlers running")
    echoes = [client.enqueue("echo", value=n) for n in range(20)]
    # Each stuck handler still blocks (for up to 60 s) while these are answered.
    assert [h.result(timeout=15)["value"] for h in echoes] == list(range(20))
    for handle in stuck:
        with pytest.raises(JobFailed, match="no result within 0.5s"):
            handle.result(timeout=5)
        assert handle.status()["state"] == "dead"

    def whole_log() -> str:
        return worker.log_path.read_text(errors="replace")
    assert whole_log().count("is abandoned and replaced") == 2, worker.log()
    redis_client.rpush(f"ll-test:{gate}", 1, 1)  # the stuck handlers return at last
    wait_until(lambda: whole_log().count("returned at last; it ends") == 2, 20,
               message="the abandoned threads end")
    assert client.enqueue("echo", value="after").result(timeout=15)["value"] == "after"


def test_keyed_jobs_run_strictly_in_order_per_key(client, job_workers, redis_client):
    for _ in range(4):
        job_workers.start(app=APP, args=("--concurrency", "8"))
    jobs = [("ordered", {"group": f"g{n % 10}", "n": n}, f"key{n % 10}", None)
            for n in range(1000)]
    handles = []
    for start in range(0, 1000, 200):
        handles += client.enqueue_many(jobs[start:start + 200])
    assert len({h.id for h in handles}) == 1000
    wait_until(lambda: sum(redis_client.llen(f"ll-test:g{k}") for k in range(10)) >= 1000, 90,
               message="1,000 keyed jobs run")
    for k in range(10):
        got = [int(x) for x in redis_client.lrange(f"ll-test:g{k}", 0, -1)]
        assert got == list(range(k, 1000, 10)), f"key{k} out of order"


def test_idempotent_enqueue_runs_once(client, job_workers):
    job_workers.start(app=APP)
    first = client.enqueue("echo", job_id="order-42", value=1)
    again = client.enqueue("echo", job_id="order-42", value=2)
    assert first.created and not again.created
    assert again.result(timeout=20)["value"] == 1


def test_bad_input_is_refused_or_dead_lettered(client, job_settings, job_workers):
    job_workers.start(app=APP)
    with pytest.raises(InvalidWrite, match="unknown job"):
        client.enqueue("no_such_job")
    with pytest.raises(InvalidWrite, match="arguments do not match"):
        client.enqueue("echo", wrong=1)
    with pytest.raises(InvalidWrite, match="limit"):
        client.enqueue("echo", value="x" * 300_000)
    # A client without the app cannot check; the worker dead-letters instead.
    with JobClient(job_settings) as blind:
        unknown = blind.enqueue("no_such_job")
        mismatch = blind.enqueue("echo", wrong=1)
    conn = pika.BlockingConnection(pika.URLParameters(job_settings.amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(JobNames(job_settings.cluster).exchange, "any", b"\xc1 not msgpack",
                         properties=pika.BasicProperties(message_id="garbage-1"))
    finally:
        conn.close()
    ok = client.enqueue("echo", value="still fine")
    assert ok.result(timeout=20)["value"] == "still fine"
    for handle, why in ((unknown, "unknown job"), (mismatch, "arguments do not match")):
        with pytest.raises(JobFailed, match=why):
            handle.result(timeout=20)

    def three_dead():
        dead = {d["id"]: d for d in list_dead(job_settings)}
        return dead if {unknown.id, mismatch.id, "garbage-1"} <= set(dead) else None

    dead = wait_until(three_dead, 20, message="three dead letters")
    assert "malformed job" in dead["garbage-1"]["error"]


def test_result_timeout_raises_timeout(client):
    handle = client.enqueue("echo", value=1)  # no worker running
    with pytest.raises(Timeout):
        handle.result(timeout=0.3)


def test_producer_enqueue_and_cli_submit(job_settings, job_workers):
    import json
    import subprocess
    import sys

    import jobapp
    from pipeline import REPO, worker_env

    from liftline import Producer

    job_workers.start(app=APP)
    with Producer(job_settings, app=jobapp.app) as producer:
        handle = producer.enqueue("echo", value="from producer", key="album:7")
        assert handle.result(timeout=20)["value"] == "from producer"
    env = worker_env(job_settings)
    run = run_liftline(["jobs", "submit", "echo", '{"value": 7}', "--wait", "20"], env=env,
                       cwd=REPO)
    assert run.returncode == 0, run.stderr
    job_id, result = run.stdout.split("\n", 1)
    assert json.loads(result)["value"] == 7
    status = run_liftline(["jobs", "status", job_id.strip(), "--json"], env=env, cwd=REPO)
    assert json.loads(status.stdout)["state"] == "succeeded"
    stats = run_liftline(["jobs", "stats", "--json"], env=env, cwd=REPO)
    echo = next(r for r in json.loads(stats.stdout) if r["name"] == "echo")
    assert echo["succeeded"] >= 2 and echo["dead"] == 0
    missing = subprocess.run([sys.executable, "-m", "liftline", "jobs", "status", "nope"],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 6 and "unknown" in missing.stderr


def test_process_pool_runs_handlers_in_children_and_kills_overruns(client, job_workers):
    worker = job_workers.start(app=APP, args=("--pool", "processes", "--concurrency", "2"))
    pids = {client.enqueue("whoami").result(timeout=20) for _ in range(4)}
    assert worker.pid not in pids and len(pids) <= 2
    assert client.enqueue("cpu", n=10_000).result(timeout=20) == sum(i * i for i in range(10_000))
    with pytest.raises(JobFailed, match="no result within 0.5s"):
        client.enqueue("slow").result(timeout=20)
    # The overrunning child was killed and replaced: the pool still has two workers.
    later = {client.enqueue("whoami").result(timeout=20) for _ in range(6)}
    assert later and worker.pid not in later
    failing = client.enqueue("until_fixed", flag="proc-fail")
    with pytest.raises(JobFailed, match="not fixed yet"):
        failing.result(timeout=30)


def test_post_v1_jobs_on_the_ingest_service(job_settings, job_workers, tmp_path):
    from http_ingest import Servers

    job_workers.start(app=APP)
    servers = Servers(tmp_path)
    try:
        server = servers.start(job_settings, app=APP)
        http = servers.client(server)
        answer = http.post("/v1/jobs", {"name": "echo", "args": {"value": "via http"},
                                        "job_id": "http-1"})
        assert answer.status == 202 and answer.body == {"job_id": "http-1", "created": True}
        again = http.post("/v1/jobs", {"name": "echo", "args": {"value": 2}, "job_id": "http-1"})
        assert again.body["created"] is False
        done = wait_until(lambda: (r := http.get("/v1/jobs/http-1")).body.get("state")
                          == "succeeded" and r, 20, message="the job over HTTP")
        assert done.body["result"]["value"] == "via http"
        assert http.post("/v1/jobs", {"name": "no_such_job"}).status == 422
        assert http.post("/v1/jobs", {"name": "echo", "args": {"wrong": 1}}).status == 422
        assert http.post("/v1/jobs", {"name": "echo", "colour": 1}).status == 422
        assert http.get("/v1/jobs/unknown-id").status == 404
    finally:
        servers.stop_all()


def test_status_round_trips_survive_a_script_flush(redis_client, cluster_name):
    """Scripts are called by digest alone; after SCRIPT FLUSH (or a Redis restart)
    the calls Redis no longer knows are loaded and made again, each exactly once."""
    from liftline.jobs.status import JobStatus

    status = JobStatus(redis_client, cluster_name, 60)
    assert status.create_many([("a", "echo", None), ("b", "echo", "k")]) == [True, True]
    redis_client.script_flush()
    assert status.create_many([("a", "echo", None), ("c", "echo", None)]) == [False, True]
    redis_client.script_flush()
    assert status.settle_many([], [("a", "echo", 1), ("b", "echo", 1)], "w1") == \
        ["queued", "queued"]
    redis_client.script_flush()
    # One turn: a's result stored, then c begun and a begun again (already ended).
    assert status.settle_many([("a", "echo", 1, codec.pack({"ok": 1}))],
                              [("c", "echo", 1), ("a", "echo", 2)], "w1") == \
        ["queued", "succeeded"]
    assert status.get("a")["state"] == "succeeded"
    assert status.get("a")["result"] == {"ok": 1}
    assert status.get("c")["state"] == "running"
    stats = {s["name"]: s for s in status.stats()}["echo"]
    assert (stats["enqueued"], stats["succeeded"], stats["running"]) == (3, 1, 2)


def _cli(settings, *args, timeout=60):
    from helpers import run_liftline
    from pipeline import REPO, worker_env

    return run_liftline(["jobs", *args], env=worker_env(settings), cwd=REPO, timeout=timeout)


def test_split_pools_and_the_cli_for_dead_jobs(client, job_settings, job_workers, redis_client):
    """`--jobs-only` runs every job and `--partitions-only` every partition; `jobs status`
    shows a retry with its attempt, `jobs dead` lists a dead job, `jobs replay` runs it."""
    import json

    from pipeline import wait_flushed

    from liftline import Producer

    jobs_worker = job_workers.start(app=APP, wait=False, args=("--jobs-only",))
    job_workers.start(app=APP, args=("--partitions-only",))
    handles = [client.enqueue("echo", value=n) for n in range(20)]
    assert [h.result(timeout=30)["value"] for h in handles] == list(range(20))
    ran_on = {h.status()["worker"] for h in handles}
    assert len(ran_on) == 1 and f"-{jobs_worker.pid}-" in ran_on.pop()
    with Producer(job_settings) as producer:
        tickets = [producer.incr("split:n", 1) for _ in range(10)]
    wait_flushed(redis_client, job_settings, tickets)

    client.status.set("shown", "echo", "retrying", attempt=2, error="boom")
    shown = _cli(job_settings, "status", "shown")
    assert shown.returncode == 0 and shown.stdout.startswith("retrying (2)"), shown
    assert "last error: boom" in shown.stdout

    handle = client.enqueue("until_fixed", flag="fix2")
    with pytest.raises(JobFailed):
        handle.result(timeout=30)
    listed = wait_until(lambda: [d for d in json.loads(_cli(job_settings, "dead", "--json").stdout)
                                 if d["id"] == handle.id], 20, message="jobs dead lists it")
    assert listed[0]["job"] == "until_fixed" and listed[0]["attempts"] == 3
    assert _cli(job_settings, "replay").returncode == 2  # neither ids nor --all: usage error
    redis_client.set("ll-test:fix2", 1)
    replayed = _cli(job_settings, "replay", handle.id)
    assert replayed.returncode == 0 and "replayed 1 job(s)" in replayed.stdout, replayed
    assert handle.result(timeout=30) == "fixed"
    assert _cli(job_settings, "status", handle.id).stdout.startswith("succeeded")


def test_stats_count_a_job_waiting_for_its_retry_as_retrying(client, job_workers):
    job_workers.start(app=APP)
    handle = client.enqueue("second_time")

    def row():
        return next((r for r in client.status.stats() if r["name"] == "second_time"), None)

    waiting = wait_until(lambda: (r := row()) and r["retrying"] == 1 and r, 20,
                         message="the job counted as retrying")
    assert (waiting["queued"], waiting["running"], waiting["failed_attempts"]) == (0, 0, 1)
    assert handle.result(timeout=20) == 2
    done = row()
    assert (done["retrying"], done["queued"], done["running"], done["succeeded"]) == (0, 0, 0, 1)
