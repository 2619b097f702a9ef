"""Celery's side of the jobs benchmark.

Worker: ``celery -A benchmarks.peers.celery_app worker --pool threads --concurrency 8``.
No result backend and ``ignore_result``: Celery stores nothing per task. Acks are
Celery's default (early: on receipt, before the task runs). With
``BENCH_PEER_CONFIRM=1`` kombu publishes with publisher confirms, waiting for
each message's confirm before ``delay()`` returns.
"""

from __future__ import annotations

import os

from celery import Celery

from benchmarks.peers._counter import bump

app = Celery("liftline-bench")
app.conf.update(
    broker_url=os.environ.get("BENCH_PEER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    task_default_queue=os.environ.get("BENCH_PEER_QUEUE", "bench-celery"),
    task_ignore_result=True,
    result_backend=None,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options=(
        {"confirm_publish": True} if os.environ.get("BENCH_PEER_CONFIRM") == "1" else {}),
)


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    bump()
