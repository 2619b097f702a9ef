"""Dramatiq's side of the jobs benchmark.

Worker: ``dramatiq benchmarks.peers.dramatiq_app --processes 1 --threads 8``.
Dramatiq's default middleware (no Results middleware: nothing is stored per
message); messages are acked after the actor returns. With
``BENCH_PEER_CONFIRM=1`` the broker publishes with ``confirm_delivery``: each
``send()`` waits for its confirm.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from benchmarks.peers._counter import bump

broker = RabbitmqBroker(
    url=os.environ.get("BENCH_PEER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    confirm_delivery=os.environ.get("BENCH_PEER_CONFIRM") == "1",
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=os.environ.get("BENCH_PEER_QUEUE", "bench-dramatiq"), max_retries=0)
def noop() -> None:
    bump()
