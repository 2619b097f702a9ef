"""The HTTP ingest service while RabbitMQ is SIGKILLed and restarted under load."""

from __future__ import annotations

import pytest
from helpers import wait_until
from ingest_faults import Load, all_acknowledged_applied


@pytest.mark.slow
def test_rabbitmq_crash_answers_503_in_time_and_loses_no_202(ingest_stack, local_servers):
    """Not in `make test`: on this RabbitMQ (3.10.8) it fails now and then for reasons
    outside the ingest service: writes published in the first second after the node
    restarts are sometimes confirmed yet missing from the stream (seen: seqs 97-135 of
    one partition acked, absent between stored seqs 96 and 136), and stream recovery
    after SIGKILL sometimes takes longer than the 60 s LocalRabbitMQ.start waits."""
    start, client = ingest_stack
    settings, http, pool = start("crash")
    load = Load(http).start()
    try:
        wait_until(lambda: load.count(202) >= 300, 30, message="writes before the crash")
        local_servers.rabbitmq.kill()
        wait_until(lambda: load.count(503) >= 20, 30, message="503s while RabbitMQ is down")
        before = load.count(202)
        local_servers.rabbitmq.start()
        wait_until(lambda: load.count(202) >= before + 300, 60,
                   message="writes confirmed after RabbitMQ came back")
    finally:
        load.finish()
    # A worker that reconnects while the streams are still recovering exits on the
    # declare's 404 (Worker.run does not retry BrokerError); `liftline up` would
    # restart it, and so does this test: what is tested here is the ingest service.
    if pool.started[-1].proc.poll() is not None:
        pool.start()
    acked = load.check()
    all_acknowledged_applied(client, settings, acked)
