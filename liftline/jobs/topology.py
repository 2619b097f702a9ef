"""RabbitMQ objects for jobs.

- ``liftline.<c>.jobs``: quorum queue for jobs without a key (competing consumers);
- ``liftline.<c>.jobs.k<n>``: quorum queues for keyed jobs, single active consumer,
  one delivery at a time: jobs of one key run one after another, in order;
- ``liftline.<c>.jobs.delay.<ms>``: classic queues with a queue TTL that
  dead-letter back into the jobs queue (retry backoff); the delays form a
  ladder so a message never waits behind a longer one;
- ``liftline.<c>.jobs.suspects``: jobs that were out when their worker died; one
  delivery at a time over the whole cluster, so a job that kills workers takes
  no other job down with it again;
- ``liftline.<c>.jobs.dlx`` (fanout) → ``…jobs.dead-intake``: where RabbitMQ puts
  a job past ``x-delivery-limit`` (a crash loop) and where workers put a job out
  of retries; workers record each in Redis and park it in ``…jobs.dead``, which
  keeps the newest ``job_dead_max`` (the oldest go first: ``x-overflow: drop-head``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pika.exceptions

from liftline.queue.topology import declare_queue, placement_arguments, report_kept
from liftline.settings import Settings

log = logging.getLogger(__name__)

# Delay ladder: 50 ms · 1.25ⁿ up to about an hour.
_LADDER = sorted({int(50 * 1.25**n) for n in range(0, 50) if 50 * 1.25**n <= 3_600_000})


class JobNames:
    def __init__(self, cluster: str) -> None:
        base = f"liftline.{cluster}.jobs"
        self.exchange = base
        self.queue = base
        self.dlx = f"{base}.dlx"
        self.intake = f"{base}.dead-intake"
        self.dead = f"{base}.dead"
        self.suspect = f"{base}.suspects"
        self._base = base

    def keyed(self, n: int) -> str:
        return f"{self._base}.k{n}"

    def delay(self, ms: int) -> str:
        return f"{self._base}.delay.{ms}"


def delay_step(seconds: float) -> int:
    """The longest ladder delay (ms) not above ``seconds``: a retry never comes early
    by more than 20%, and never late."""
    ms = seconds * 1000
    best = _LADDER[0]
    for step in _LADDER:
        if step <= ms:
            best = step
        else:
            break
    return best


def key_queue(key: str, settings: Settings) -> int:
    from liftline.partitioning import partition_for

    return partition_for(key, settings.job_key_queues)


def declare(channel: Any, settings: Settings) -> JobNames:
    """Declare every jobs queue and exchange (idempotent)."""
    names = JobNames(settings.cluster)
    placed = placement_arguments(settings, quorum=True)
    work_args = {"x-queue-type": "quorum", "x-delivery-limit": settings.job_delivery_limit,
                 "x-dead-letter-exchange": names.dlx, **placed}
    kept: list[str] = []
    channel.exchange_declare(names.exchange, exchange_type="direct", durable=True)
    channel.exchange_declare(names.dlx, exchange_type="fanout", durable=True)
    channel = declare_queue(channel, names.queue, work_args, kept)
    channel.queue_bind(names.queue, names.exchange, routing_key="any")
    for n in range(settings.job_key_queues):
        channel = declare_queue(channel, names.keyed(n),
                                {**work_args, "x-single-active-consumer": True}, kept)
        channel.queue_bind(names.keyed(n), names.exchange, routing_key=f"k{n}")
    # A suspect already took one worker down: it may take limit - 1 more.
    channel = declare_queue(channel, names.suspect, {
        **work_args, "x-delivery-limit": max(settings.job_delivery_limit - 1, 0),
        "x-single-active-consumer": True}, kept)
    channel = declare_queue(channel, names.intake, {"x-queue-type": "quorum", **placed}, kept)
    channel.queue_bind(names.intake, names.dlx)
    report_kept(kept)
    _declare_dead(channel, names, settings)
    return names


def _declare_dead(channel: Any, names: JobNames, settings: Settings) -> None:
    """The parking queue of dead jobs, bounded; last, for its channel may close.

    A cluster made before the bound existed has the queue without it, and
    RabbitMQ refuses a declare with other arguments (406, closing the channel):
    that queue is kept as it is, with a warning saying how to bound it.
    """
    try:
        declare_queue(channel, names.dead, {
            "x-queue-type": "quorum", "x-max-length": settings.job_dead_max,
            "x-overflow": "drop-head", **placement_arguments(settings, quorum=True)})
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        log.warning("%s exists without a length bound (made by an earlier liftline); "
                    "bound it with a RabbitMQ policy (max-length %d) or replay and "
                    "delete it", names.dead, settings.job_dead_max)


def work_queues(settings: Settings) -> list[str]:
    """The queues jobs wait in to run: the shared one, then the keyed ones."""
    names = JobNames(settings.cluster)
    return [names.queue] + [names.keyed(n) for n in range(settings.job_key_queues)]


def depths(channel: Any, queues: list[str]) -> dict[str, tuple[int, int]]:
    """(ready messages, consumers) of each of ``queues``, by passive declares.

    Stops at the first queue that does not exist yet: RabbitMQ answers 404 and
    closes ``channel``, and the answer holds the queues before it (none when the
    jobs were never declared; they are declared all together). Any other refusal
    raises ChannelClosedByBroker.
    """
    out: dict[str, tuple[int, int]] = {}
    for queue in queues:
        try:
            ok = channel.queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            break
        out[queue] = (int(ok.message_count), int(ok.consumer_count))
    return out


def declare_delay(channel: Any, names: JobNames, ms: int) -> str:
    """The delay queue for ``ms`` (declared on first use)."""
    queue = names.delay(ms)
    channel.queue_declare(queue, durable=True, arguments={
        "x-message-ttl": ms, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.queue,
        # An idle delay queue disappears after a day.
        "x-expires": max(ms * 4, 86_400_000),
    })
    return queue


assert math.isfinite(_LADDER[-1])
