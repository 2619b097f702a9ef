"""The dead-letter queue of jobs: list and replay.

Listing reads every parked message and gives them all back (the channel closes
without acks); replay republishes the chosen jobs as new first attempts
(confirmed) before it acks them out of the dead queue.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pika
import pika.exceptions

from liftline.errors import InvalidMessage, NotFound
from liftline.jobs import topology
from liftline.jobs.spec import Job
from liftline.jobs.status import JobStatus
from liftline.queue.confirms import ConfirmedChannel
from liftline.queue.connection import close_without_cancel, connect_blocking
from liftline.settings import Settings
from liftline.store.redis_store import connect


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _read_all(conn: pika.BlockingConnection, queue: str, limit: int,
              timeout_s: float = 5.0) -> tuple[Any, list[tuple[int, Any, bytes]]]:
    """Every ready message of ``queue`` (up to ``limit``), unacked on a new channel."""
    channel = conn.channel()
    ready = channel.queue_declare(queue, passive=True).method.message_count
    want = min(limit, ready)
    channel.basic_qos(prefetch_count=max(1, min(want, 10_000)))
    got: list[tuple[int, Any, bytes]] = []

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((method.delivery_tag, props, body))

    if want:
        channel.basic_consume(queue, on_message)
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    return channel, got


def _record(props: Any, body: bytes) -> dict[str, Any]:
    headers = props.headers or {}
    record = {"id": props.message_id or "?", "job": _text(headers.get("x-liftline-job", "?")),
              "error": _text(headers.get("x-liftline-error", "")),
              "attempts": headers.get("x-liftline-attempts", 0),
              "dead_at_ms": headers.get("x-liftline-dead-at-ms")}
    with contextlib.suppress(InvalidMessage):
        job = Job.unpack(body)
        record.update(job=job.name, args=job.args, key=job.key)
    return record


def list_dead(settings: Settings, limit: int = 100, *,
              connection: pika.BlockingConnection | None = None) -> list[dict[str, Any]]:
    """Dead jobs, oldest first: id, job, error, attempts, args.

    On ``connection`` if given (left open), else on a connection of its own.
    Declares nothing: a reader whose job settings differ from the workers' (a
    delivery limit, say) must not be refused for declaring the queues otherwise,
    and no dead-letter queue yet means no dead jobs.
    """
    conn = connection or connect_blocking(settings, name="liftline-jobs-dead", attempts=2,
                                          timeout_s=settings.query_timeout_s)
    try:
        names = topology.JobNames(settings.cluster)
        try:
            channel, got = _read_all(conn, names.dead, limit,
                                     timeout_s=settings.query_timeout_s)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return []
            raise
        records = [_record(props, body) for _, props, body in got]
        close_without_cancel(channel)  # the dead jobs stay where they are
        return records
    finally:
        if connection is None and conn.is_open:
            conn.close()


def replay(settings: Settings, job_ids: list[str] | None) -> list[str]:
    """Put dead jobs (all when ``job_ids`` is None) back in their queue as attempt 1."""
    conn = connect_blocking(settings, name="liftline-jobs-replay", attempts=2)
    client = connect(settings.redis_url)
    status = JobStatus(client, settings.cluster, settings.job_result_ttl_s)
    try:
        names = topology.declare(conn.channel(), settings)
        pub = ConfirmedChannel(conn)
        channel, got = _read_all(conn, names.dead, 100_000)
        chosen = [(tag, props, body) for tag, props, body in got
                  if job_ids is None or props.message_id in job_ids]
        if job_ids is not None:
            missing = set(job_ids) - {props.message_id for _, props, _ in chosen}
            if missing:
                raise NotFound(f"not in the dead-letter queue: {', '.join(sorted(missing))}")
        replayed = []
        for tag, _props, body in chosen:
            try:
                job = Job.unpack(body)
            except InvalidMessage:
                continue  # malformed bytes stay dead; there is nothing to run
            job.attempt = 1
            routing = f"k{topology.key_queue(job.key, settings)}" if job.key else "any"
            # Queued before it is published: a fast worker must not find it dead.
            status.set(job.id, job.name, "queued", attempt=0, counter="replayed", error=None)
            pub.publish(names.exchange, routing, job.pack(),
                        pika.BasicProperties(message_id=job.id, delivery_mode=2))
            pub.wait(settings.confirm_timeout_s)
            channel.basic_ack(tag)
            replayed.append(job.id)
        close_without_cancel(channel)  # the jobs not chosen stay dead
        return replayed
    finally:
        client.close()
        if conn.is_open:
            conn.close()
