"""liftline's side of the jobs benchmark.

Worker: ``liftline worker --jobs-only --concurrency 8 --app benchmarks.peers.liftline_jobs:app``
(servers and cluster from ``LIFTLINE_AMQP_URL`` / ``LIFTLINE_REDIS_URL`` / ``LIFTLINE_CLUSTER``).
"""

from __future__ import annotations

from benchmarks.peers._counter import bump
from liftline import App

app = App("bench-jobs")


@app.job("noop", retries=0)
def noop(ctx) -> None:  # type: ignore[no-untyped-def]
    bump()
