"""Workers that die under jobs: the job runs again elsewhere; a crash loop ends dead."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import wait_until

from liftline.jobs.client import JobClient, JobFailed
from liftline.jobs.dead import list_dead

APP = "jobapp:app"


@pytest.fixture
def job_settings(settings):
    return settings.replace(job_delivery_limit=3, job_key_queues=2)


def test_a_job_whose_worker_is_killed_runs_again_elsewhere(job_settings, job_workers, redis_client):
    import jobapp

    first = job_workers.start(app=APP)
    with JobClient(job_settings, jobapp.app) as client:
        handle = client.enqueue("long", marker="long1", seconds=2.0)
        wait_until(lambda: redis_client.llen("ll-test:long1") == 1, 20, message="job started")
        second = job_workers.start(app=APP)
        os.kill(first.pid, signal.SIGKILL)
        assert handle.result(timeout=60) == second.pid
    runs = [r.decode() for r in redis_client.lrange("ll-test:long1", 0, -1)]
    assert [r.split(":")[0] for r in runs] == [str(first.pid), str(second.pid)]


def test_a_job_that_kills_its_worker_ends_dead_and_others_still_run(job_settings, job_workers):
    import jobapp

    job_workers.start(app=APP)
    job_workers.start(app=APP)
    with JobClient(job_settings, jobapp.app) as client:
        poison = client.enqueue("suicide")
        good = [client.enqueue("echo", value=n) for n in range(30)]

        def supervise_until_dead() -> bool:
            # Like `liftline up`: a worker that died is started again.
            for worker in list(job_workers.started):
                if worker.proc.poll() is not None:
                    job_workers.started.remove(worker)
                    job_workers.start(app=APP, wait=False)
            return poison.status()["state"] == "dead"

        wait_until(supervise_until_dead, 90, interval_s=0.2, message="the poison job dead")
        assert [g.result(timeout=60)["value"] for g in good] == list(range(30))
        with pytest.raises(JobFailed, match="delivery limit"):
            poison.result(timeout=1)
    dead = wait_until(lambda: [d for d in list_dead(job_settings) if d["id"] == poison.id], 20)
    assert dead[0]["job"] == "suicide"
