"""Bursts against a real autoscaler (`liftline autoscale`, local pool): it scales
out while the backlog is high, the backlog drains, it scales back in after the
quiet window, and scale-in never costs a write or a job: every stopped worker
took the graceful path (exit 0 after its "stopped" log line) and the history
check passes. A worker that does not stop in time is killed and fails over."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pika
import pytest
from autoscaling import AutoscalerRun, burst
from helpers import wait_until
from history import check
from pipeline import memory_state, redis_state, wait_flushed

from liftline import Producer, Settings
from liftline.autoscale.scalers import LocalPool
from liftline.jobs.client import JobClient
from liftline.jobs.topology import JobNames
from liftline.store.keys import Keys


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Short heartbeats and autoscaler intervals: a burst test in well under a minute."""
    return settings.replace(heartbeat_s=0.3, member_ttl_s=2.0, replicas=2, autoscale_min=1,
                            autoscale_max=4, autoscale_target=10_000, autoscale_interval_s=0.5,
                            autoscale_scale_down_after_s=3.0, autoscale_stop_timeout_s=60.0)


def members(client, settings: Settings) -> int:
    return int(client.scard(Keys(settings.cluster).members))


def job_queue(settings: Settings) -> tuple[int, int]:
    """(consumers, ready jobs) of the cluster's unkeyed job queue right now."""
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        method = conn.channel().queue_declare(JobNames(settings.cluster).queue,
                                              passive=True).method
        return method.consumer_count, method.message_count
    finally:
        conn.close()


def assert_graceful_stops(run: AutoscalerRun) -> dict[int, tuple[int, str]]:
    """Every worker the autoscaler stopped exited 0 after logging its graceful stop."""
    stopped = run.stopped_workers()
    started = run.started_workers()
    assert stopped, run.log()[-3000:]
    assert not run.killed_workers(), run.log()[-3000:]
    graceful = {pid for pid, (code, how) in stopped.items() if how != "early"}
    assert graceful, stopped
    for pid, (code, how) in stopped.items():
        log = started[pid].read_text(errors="replace")
        if how == "early":  # SIGTERM while starting, before it registered: it held nothing
            assert code == -signal.SIGTERM and not re.search(r"worker \S+ stopped", log)
            continue
        assert (code, how) == (0, "graceful"), f"worker {pid}: {code} {how}\n{log[-2000:]}"
        # The worker's own last word on its ordered stop (flushed, deregistered).
        assert re.search(r"liftline\.workers\.partition_worker: worker \S+ stopped", log), \
            log[-2000:]
        assert "Traceback" not in log, log[-2000:]
    return {pid: stopped[pid] for pid in graceful}


def test_write_burst_scales_out_drains_and_scales_back_in(fast: Settings, redis_client,
                                                          tmp_path: Path) -> None:
    run = AutoscalerRun(fast, redis_client, tmp_path)
    try:
        wait_until(lambda: members(redis_client, fast) == 1, 30, message="the first worker")
        began = time.time()
        history, took = burst(fast, 200_000, processes=2)
        assert len(history.acked) == 200_000
        # The backlog drains: every acknowledged write applied and flushed.
        wait_flushed(redis_client, fast, history.tickets, timeout_s=120)
        drained = time.time()
        # Back to one worker after the quiet window(s).
        wait_until(lambda: (run.samples()[-1]["current"] == 1 and
                            members(redis_client, fast) == 1 and not run.pool_pids()[1:]),
                   60, interval_s=0.2, message="the pool back at 1 worker")
        samples = [s for s in run.samples() if s["t"] >= began]
        ups = [s for s in samples if s["action"] == "up"]
        assert ups and ups[0]["backlog"] > fast.autoscale_target, samples
        assert max(s["current"] for s in samples) > 1
        # More than one worker ran while there was a backlog to work off.
        assert any(s["current"] > 1 and s["backlog"] > 0 for s in samples), samples
        assert all(s["current"] <= fast.autoscale_max for s in samples)
        assert [s for s in samples if s["t"] > drained + 1][-1]["backlog"] == 0
        downs = [s for s in samples if s["action"] == "down"]
        assert downs and downs[-1]["desired"] == 1
        assert_graceful_stops(run)
        verdict = check(history, redis_state(redis_client, fast))
        assert verdict.ok, (len(verdict.lost), len(verdict.duplicated), len(verdict.unexpected))
        assert verdict.applied == 200_000
        in_memory = check(history, memory_state(fast, [f"h:{i}" for i in range(64)]))
        assert in_memory.ok
        print(f"burst of 200,000 acked in {took:.1f}s; peak pool "
              f"{max(s['current'] for s in samples)}; peak backlog "
              f"{max(s['backlog'] for s in samples)}")
    finally:
        code = run.stop()
    assert code == 0, run.log()[-3000:]


def test_job_burst_scales_job_workers_and_scale_in_waits_for_running_jobs(
        fast: Settings, redis_client, tmp_path: Path) -> None:
    # A quiet window long enough to see the whole pool consuming and enqueue into it.
    tuned = fast.replace(autoscale_max=3, autoscale_target=400, autoscale_scale_down_after_s=5.0)
    run = AutoscalerRun(tuned, redis_client, tmp_path, app="jobapp:app",
                        worker_args="--concurrency 2")
    marker = f"long-{os.urandom(3).hex()}"
    try:
        wait_until(lambda: members(redis_client, tuned) == 1, 30, message="the first worker")
        began = time.time()
        with JobClient(tuned) as jobs:
            for _ in range(4):
                jobs.enqueue_many([("noop", {}, None, None) for _ in range(500)])
            # Scaled out while the queue was deep.
            wait_until(lambda: any(s["action"] == "up" and s["jobs"] > tuned.autoscale_target
                                   for s in run.samples() if s["t"] >= began),
                       30, message="scale-up")
            wait_until(lambda: run.samples()[-1]["current"] > 1, 30,
                       message="more than 1 job worker")

            def quiet_idle_and_all_consuming() -> bool:
                # The quiet window starts once the queue is short: jobs that outlast it,
                # sent while every worker of the pool idles on an empty queue, go round
                # the consumers, so scale-in finds workers running jobs. (Sent behind
                # other jobs, or with one consumer alone, they can all go to the one
                # worker whose prefetch of 4 x 2 handlers has room at that moment.)
                last = run.samples()[-1]
                if last["action"] != "wait":
                    return False
                consumers, ready = job_queue(tuned)
                noops = {row["name"]: row for row in jobs.status.stats()}["noop"]
                return consumers >= last["current"] and ready == 0 \
                    and noops["succeeded"] == 2000  # every worker idle
            wait_until(quiet_idle_and_all_consuming, 90, interval_s=0.05,
                       message="the quiet window, an empty queue and every worker consuming")
            pool = run.samples()[-1]["current"]
            handles = [jobs.enqueue("long", marker=marker, seconds=tuned.
                                    autoscale_scale_down_after_s + 3) for _ in range(2 * pool)]
            wait_until(lambda: len({x.split(b":")[0] for x in
                                    redis_client.lrange(f"ll-test:{marker}", 0, -1)}) > 1,
                       10, message="long jobs started on more than one worker")
            results = [h.result(60) for h in handles]
        wait_until(lambda: run.samples()[-1]["current"] == 1 and members(redis_client, tuned) == 1
                   and not run.pool_pids()[1:], 60, interval_s=0.2, message="the pool back at 1")
        samples = [s for s in run.samples() if s["t"] >= began]
        assert max(s["current"] for s in samples) > 1
        with JobClient(tuned) as client:
            stats = {row["name"]: row for row in client.status.stats()}
        assert stats["noop"]["succeeded"] == 2000 and stats["noop"]["dead"] == 0
        stopped = assert_graceful_stops(run)
        # Every long job ran once, to the end, even on the workers being stopped.
        runs = [x.decode() for x in redis_client.lrange(f"ll-test:{marker}", 0, -1)]
        assert sorted(r.split(":")[1] for r in runs) == ["1"] * len(handles), runs
        ran_on = {int(r.split(":")[0]) for r in runs}
        assert set(results) == ran_on
        assert ran_on & set(stopped), (ran_on, stopped)  # some ran on a scaled-in worker
    finally:
        code = run.stop()
    assert code == 0, run.log()[-3000:]


def test_a_worker_that_does_not_stop_in_time_is_killed_and_fails_over(
        fast: Settings, redis_client, tmp_path: Path) -> None:
    pool = LocalPool(fast, tmp_path / "workers", stop_timeout_s=1.0)
    try:
        pool.scale_to(2)
        wait_until(lambda: members(redis_client, fast) == 2, 30, message="2 workers")
        with Producer(fast) as producer:
            tickets = [f.result(30) for f in
                       [producer.submit("incr", f"c{i % 100}", 1) for i in range(5000)]]
        wait_flushed(redis_client, fast, tickets)
        victim = pool.running()[-1]
        os.kill(victim.pid, signal.SIGSTOP)  # hung: it cannot act on SIGTERM
        pool.scale_to(1)
        wait_until(lambda: (pool.poll(), pool.exits)[1], 10, message="the kill")
        assert pool.exits == [{"pid": victim.pid, "code": -signal.SIGKILL, "how": "killed",
                               "log": str(victim.log_path)}]
        with Producer(fast) as producer:
            more = [f.result(30) for f in
                    [producer.submit("incr", f"c{i % 100}", 1) for i in range(5000)]]
        # Its partitions failed over to the survivor: everything is applied.
        wait_flushed(redis_client, fast, tickets + more, timeout_s=30)
        assert redis_state(redis_client, fast) == {f"c{i}": 100 for i in range(100)}
    finally:
        pool.close()
