"""State that would grow for ever has a bound: parked dead jobs (real RabbitMQ).

Producer watermarks have their own test (test_producer_expiry_in_redis.py); the dead
letters of writes (a capped stream per partition), job records (a TTL) and the
autoscaler's samples (a capped list) are bounded in the one Lua script or
pipeline that writes them.
"""

from __future__ import annotations

import logging

import pika
import pytest

from liftline.jobs import dead, topology
from liftline.jobs.topology import JobNames
from liftline.settings import Settings


def park(settings: Settings, ids: list[str]) -> None:
    """Put messages in the dead-job queue the way a worker parks a dead job."""
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for job_id in ids:
            channel.basic_publish("", JobNames(settings.cluster).dead, b"not a job",
                                  pika.BasicProperties(message_id=job_id, delivery_mode=2,
                                                       headers={"x-liftline-job": "j"}))
    finally:
        conn.close()


def test_the_dead_job_queue_keeps_the_newest_job_dead_max(settings: Settings) -> None:
    bounded = settings.replace(job_dead_max=3)
    conn = pika.BlockingConnection(pika.URLParameters(bounded.amqp_url))
    try:
        topology.declare(conn.channel(), bounded)
    finally:
        conn.close()
    park(bounded, [f"job-{n}" for n in range(5)])
    assert [r["id"] for r in dead.list_dead(bounded)] == ["job-2", "job-3", "job-4"]


def test_an_unbounded_dead_queue_of_an_earlier_version_is_kept_with_a_warning(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    try:
        conn.channel().queue_declare(JobNames(settings.cluster).dead, durable=True,
                                     arguments={"x-queue-type": "quorum"})
        with caplog.at_level(logging.WARNING, logger="liftline.jobs.topology"):
            names = topology.declare(conn.channel(), settings)
    finally:
        conn.close()
    assert "without a length bound" in caplog.text
    park(settings, ["old-1", "old-2"])
    assert [r["id"] for r in dead.list_dead(settings)] == ["old-1", "old-2"]
    assert names.dead == JobNames(settings.cluster).dead
