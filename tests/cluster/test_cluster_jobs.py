"""Jobs on the 3-node cluster: SIGKILL of the node leading the most job queues.

5,000 jobs (4,000 without a key, 1,000 over 20 keys; 40 ms each) on quorum queues
with three replicas, run by 3 jobs-only workers (4 threads each). 4,500 are
enqueued; once 1,000 have run, the node leading the most job queues (of nodes
leading as many, one a job runner is connected to) is SIGKILLed and the other 500
are enqueued during the outage (a refused batch is sent again with the same ids,
as a submitter would); then the node is started again. Every job must end ``succeeded``, each
having run at least once (delivery is at least once); the test counts and
prints how many ran more than once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from brokers import (
    busiest_job_leader,
    cluster_settings,
    connection_nodes,
    job_queues_online,
    timed,
)
from helpers import wait_until
from pipeline import Workers

from liftline.errors import LiftlineError
from liftline.jobs.client import JobClient
from liftline.store.keys import Keys

APP = "jobapp:app"
BEFORE, DURING, KEYED_EVERY, KEYS = 4500, 500, 5, 20
SECONDS = 0.04  # each job's run: 3 workers x 4 threads, about 250 jobs/s at most


def job_list(first: int, count: int, log: str) -> list[tuple[str, dict[str, Any], str | None,
                                                             str | None]]:
    """``count`` tally jobs with ids ``<log>-<n>``; every 5th has one of 20 keys."""
    return [("tally", {"log": log, "seconds": SECONDS},
             f"key{n % KEYS}" if n % KEYED_EVERY == 0 else None, f"{log}-{n}")
            for n in range(first, first + count)]


def runner_nodes(cluster: Any) -> dict[str, str]:
    """The job runners' connections (``liftline-jobs-<member>``) → their node."""
    return {name: node for name, node in connection_nodes(cluster, "liftline-jobs-").items()
            if name != "liftline-jobs-client"}


def states(client: Any, keys: Keys, ids: list[str]) -> dict[str, str]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "state")
    return {i: (s.decode() if s else "") for i, s in zip(ids, pipe.execute(), strict=True)}


@pytest.mark.timeout(600)
def test_jobs_survive_the_kill_of_the_node_leading_the_most_job_queues(
        cluster_nodes, endpoints, cluster_name, redis_client, tmp_path):
    import jobapp

    settings = cluster_settings(cluster_nodes, endpoints, cluster_name, job_key_queues=4,
                                reconnect_backoff_s=0.2, reconnect_backoff_max_s=1.0)
    keys = Keys(settings.cluster)
    log = f"tally-{cluster_name}"
    pool = Workers(settings, redis_client, tmp_path)
    refused = 0
    try:
        with JobClient(settings, jobapp.app) as jobs:
            jobs.enqueue_many(job_list(0, 1, log))  # declares the job queues
            wait_until(lambda: job_queues_online(settings), 60, interval_s=0.5,
                       message="every job queue with 3 members online")
            cluster_nodes.sync_to_disk()  # RabbitMQ 3.10: the new queues' Ra registrations
            for _ in range(3):  # a jobs-only worker does not register as a member
                pool.start(app=APP, args=("--jobs-only", "--concurrency", "4"), wait=False)
            runners = wait_until(lambda: len(r := runner_nodes(cluster_nodes)) == 3 and r, 60,
                                 interval_s=0.5, message="3 job runners connected")
            for first in range(1, BEFORE, 500):
                jobs.enqueue_many(job_list(first, min(500, BEFORE - first), log))
            ids = [f"{log}-{n}" for n in range(BEFORE)]
            wait_until(lambda: redis_client.hlen(f"ll-test:{log}") >= 1000, 120,
                       interval_s=0.1, message="1,000 jobs run")
            node, leading = busiest_job_leader(settings, prefer=runners.values())
            index = cluster_nodes.index_of(node)
            at_kill = redis_client.hlen(f"ll-test:{log}")
            cluster_nodes.kill_node(index)
            killed = time.monotonic()
            # Enqueue during the outage, in batches of 100; a refused batch is sent again.
            first_confirm_s = None
            deadline = killed + 120
            for first in range(BEFORE, BEFORE + DURING, 100):
                while True:
                    try:
                        jobs.enqueue_many(job_list(first, 100, log))
                        break
                    except LiftlineError:
                        refused += 1
                        assert time.monotonic() < deadline, "enqueue refused for 120 s"
                first_confirm_s = first_confirm_s or time.monotonic() - killed
            # Jobs go on running on the two nodes left.
            wait_until(lambda: redis_client.hlen(f"ll-test:{log}") >= at_kill + 200, 120,
                       message="200 more jobs run after the kill")
            resumed_s = time.monotonic() - killed
            # The management API's figures lag: the rejoin below is measured from a view
            # that saw the killed node's queue members go offline.
            wait_until(lambda: not job_queues_online(settings), 30, interval_s=0.2,
                       message="the killed node's queue members seen offline")
            ids += [f"{log}-{n}" for n in range(BEFORE, BEFORE + DURING)]
            cluster_nodes.start_node(index)
            restarted_s = time.monotonic() - killed
            rejoin_s = timed(lambda: job_queues_online(settings), 120,
                             message="every job queue with 3 members online again")

            pending = list(ids)

            def all_succeeded() -> bool:
                nonlocal pending
                got = states(redis_client, keys, pending)
                assert "dead" not in got.values(), [i for i, s in got.items() if s == "dead"][:5]
                pending = [i for i, s in got.items() if s != "succeeded"]
                return not pending

            wait_until(all_succeeded, 240, interval_s=0.5, message="every job succeeded")
            done_s = time.monotonic() - killed
        runs = {k.decode(): int(v)
                for k, v in redis_client.hgetall(f"ll-test:{log}").items()}
    finally:
        pool.stop_all()
    assert set(runs) == set(ids), sorted(set(ids) - set(runs))[:10]
    twice = {i: n for i, n in runs.items() if n > 1}
    lost_server = sum("job runner lost a server" in w.log_path.read_text() for w in pool.started)
    print(f"\njobs on the cluster: {len(ids):,} jobs, {node} (leading {leading} job queues) "
          f"SIGKILLed after {at_kill:,} had run; jobs running again {resumed_s:.2f} s after "
          f"the kill (200 more run), enqueue confirmed {first_confirm_s:.2f} s after it "
          f"({refused} refused batches sent again), the node started again "
          f"{restarted_s:.2f} s after it and its queues online "
          f"{rejoin_s:.2f} s later, all succeeded {done_s:.2f} s after it; "
          f"{len(twice)} ran more than once (at most {max(twice.values(), default=1)} times); "
          f"{lost_server} of 3 runners lost a server (connected to "
          f"{sorted(runners.values())})")
    assert all(w.proc.returncode == 0 for w in pool.started), [w.log() for w in pool.started]
