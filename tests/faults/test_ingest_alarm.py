"""The HTTP ingest service under a RabbitMQ memory alarm and a RabbitMQ stop (a crash:
test_ingest_crash.py, marked slow).

Every request must end 202 or 503 (+ Retry-After) within the publish bound,
never hang; every 202 must be applied afterwards.
"""

from __future__ import annotations

from helpers import wait_until
from ingest_faults import Load, all_acknowledged_applied


def test_memory_alarm_answers_503_in_time_and_loses_no_202(ingest_stack, local_servers):
    start, client = ingest_stack
    settings, http, _pool = start("alarm")
    load = Load(http).start()
    try:
        wait_until(lambda: load.count(202) >= 300, 30, message="writes before the alarm")
        local_servers.rabbitmq.ctl("set_vm_memory_high_watermark", "0")
        wait_until(lambda: load.count(503) >= 20, 30, message="503s during the alarm")
        assert http.get("/readyz").status == 503
        before = load.count(202)
        local_servers.rabbitmq.ctl("set_vm_memory_high_watermark", "0.4")
        wait_until(lambda: load.count(202) >= before + 300, 30,
                   message="writes confirmed after the alarm cleared")
    finally:
        load.finish()
    acked = load.check()
    assert http.get("/readyz").status == 200
    all_acknowledged_applied(client, settings, acked)


def test_rabbitmq_stopped_answers_503_in_time_and_loses_no_202(ingest_stack, local_servers):
    """RabbitMQ unreachable (a clean stop, then a start: the crash is test_ingest_crash.py)."""
    start, client = ingest_stack
    settings, http, pool = start("down")
    load = Load(http).start()
    try:
        wait_until(lambda: load.count(202) >= 300, 30, message="writes before the stop")
        local_servers.rabbitmq.stop()
        wait_until(lambda: load.count(503) >= 20, 30, message="503s while RabbitMQ is down")
        assert http.get("/readyz").status == 503
        before = load.count(202)
        local_servers.rabbitmq.start()
        wait_until(lambda: load.count(202) >= before + 300, 60,
                   message="writes confirmed after RabbitMQ came back")
    finally:
        load.finish()
    acked = load.check()
    all_acknowledged_applied(client, settings, acked)
