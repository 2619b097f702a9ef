"""Jobs across a Redis restart: every confirmed job ends succeeded with its result.

The runner stores results and marks jobs running in one Redis round trip per
turn, calling its Lua scripts by digest; a restarted Redis has forgotten the
scripts, and the jobs in flight when Redis went away were run but not recorded.
"""

from __future__ import annotations

import time

import redis
from helpers import wait_until
from pipeline import Workers

from liftline import Settings
from liftline.errors import LiftlineError
from liftline.jobs.client import JobClient

APP = "jobapp:app"


def test_jobs_ride_out_a_redis_restart(local_servers, tmp_path):
    import jobapp

    e = local_servers.endpoints
    settings = Settings.from_env(
        {}, amqp_url=e.amqp_url, redis_url=e.redis_url, cluster="jobredis", partitions=4,
        job_key_queues=2, reconnect_backoff_s=0.2, reconnect_backoff_max_s=1.0,
    )
    client = redis.Redis.from_url(settings.redis_url)
    pool = Workers(settings, client, tmp_path)
    try:
        worker = pool.start(app=APP, args=("--concurrency", "4"))
        total = 4000
        with JobClient(settings, jobapp.app) as jobs:
            before = jobs.enqueue_many([("echo", {"value": i}, None, None) for i in range(total)])
            wait_until(lambda: _succeeded(jobs) >= 300, 60, message="jobs running")
            local_servers.redis.stop()
            time.sleep(1.0)  # the outage: the runner's round trips fail meanwhile
            local_servers.redis.start()
            done_at_restart = _succeeded(jobs)
            assert done_at_restart < total, "the restart came after the last job"
            # The client's own scripts are gone too: enqueue loads them again.
            after = jobs.enqueue_many([("echo", {"value": -i}, None, None) for i in range(200)])
            for n, handle in enumerate(before):
                assert handle.result(timeout=90)["value"] == n
            for n, handle in enumerate(after):
                assert handle.result(timeout=60)["value"] == -n
            assert "job runner lost a server" in worker.log_path.read_text(), \
                "the runner never noticed the outage"
            stats = {s["name"]: s for s in jobs.status.stats()}["echo"]
            assert stats["enqueued"] == total + 200
            assert stats["succeeded"] >= total + 200  # one in flight at the stop may run twice
            assert stats["dead"] == 0
    finally:
        pool.stop_all()
        client.close()


def _succeeded(jobs: JobClient) -> int:
    try:
        return sum(s["succeeded"] for s in jobs.status.stats() if s["name"] == "echo")
    except LiftlineError:  # Redis is still loading its data after the restart
        return 0
