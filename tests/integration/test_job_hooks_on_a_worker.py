"""Job hooks in a real worker process: exact counts of every hook event for a known
mix of jobs, a hook that raises everywhere changes nothing, and a hook gives up early."""

from __future__ import annotations

import pytest
from helpers import wait_until

from liftline.jobs.client import JobClient, JobFailed

APP = "hookapp:app"


@pytest.fixture
def job_settings(settings):
    return settings.replace(job_key_queues=2)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_hooks_see_every_job_event_exactly_once(pool, job_settings, job_workers, redis_client):
    """With processes, before_job runs on the runner's thread (not in the child)."""
    import hookapp

    worker = job_workers.start(app=APP, args=("--pool", pool))
    with JobClient(job_settings, hookapp.app) as client, JobClient(job_settings) as blind:
        oks = [client.enqueue("ok", value=n) for n in range(3)]
        flaky = client.enqueue("flaky")
        keyed = client.enqueue("flaky", key="account:7")  # retried in place, on its key queue
        doomed = client.enqueue("doomed")
        permanent = client.enqueue("permanent")
        slow = client.enqueue("slow")
        unknown = blind.enqueue("no_such_job")  # dead without running

        assert [h.result(timeout=30) for h in oks] == [0, 1, 2]
        assert flaky.result(timeout=30) == 3 and keyed.result(timeout=30) == 3
        with pytest.raises(JobFailed, match="after 3 attempt"):
            doomed.result(timeout=30)
        with pytest.raises(JobFailed, match="permanent: .*PermanentError: no such account"):
            permanent.result(timeout=30)
        assert permanent.status()["attempt"] == 1  # given up at once, not after 6 attempts
        with pytest.raises(JobFailed, match="no result within 0.3s"):
            slow.result(timeout=30)
        with pytest.raises(JobFailed, match="unknown job"):
            unknown.result(timeout=30)

    # Runs: ok 3, flaky 3 + 3 (two failures each), doomed 3, permanent 1, slow 1.
    expected = {
        "before": 14, "before:ok": 3, "before:flaky": 6, "before:doomed": 3,
        "before:permanent": 1, "before:slow": 1,
        "after": 14, "after:Succeed": 5, "after:Retry": 6, "after:Dead": 3,
        "after:saw_before": 13,  # all but "slow" (see hookapp.Counting.after_job)
        "failure": 9, "timeout": 1,
        "retry": 6, "retry:flaky": 4, "retry:doomed": 2,
        # Every dead letter, including the job that never ran (it has no handler).
        "dead": 4, "dead:doomed": 1, "dead:permanent": 1, "dead:slow": 1, "dead:no_such_job": 1,
    }
    key = f"ll-test:{job_settings.cluster}:hooks"

    def counts() -> dict[str, int]:
        return {k.decode(): int(v) for k, v in redis_client.hgetall(key).items()}

    try:
        wait_until(lambda: counts() == expected, 20)
    except AssertionError:
        lines = worker.log_path.read_text(errors="replace").splitlines()
        # What went wrong in the counting hook, among Broken's expected tracebacks.
        counting = [line for n, at in enumerate(lines) if "Counting object" in at
                    for line in lines[n:n + 20]]
        assert counts() == expected, "\n".join(counting)
    # The hook that raises everywhere was called as often, and only logged.
    log = worker.log_path.read_text(errors="replace")
    for method, n in (("before_job", 14), ("after_job", 14), ("on_failure", 9),
                      ("on_timeout", 1), ("on_retry", 6), ("on_dead", 4)):
        assert log.count(f"failed in {method}; ignored") == n, (method, worker.log())
    assert worker.proc.poll() is None
