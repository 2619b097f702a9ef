"""A worker host cut off by a network partition, longer than its member TTL.

The worker runs in a network namespace of the test's own (tests/netns.py),
reaching RabbitMQ and Redis through relays on its veth; a second worker and
the producer run on this host. Under steady counter writes the link goes down:
no reset, packets stop, as when a host is lost. The cut-off worker's heartbeats
expire, the other worker claims its partitions, and when the link comes back
it is fenced: it sees the newer epochs and drops the partitions, or its late
flush is refused by the flush script. In the end every counter in Redis equals
what was confirmed: nothing acknowledged lost, nothing applied twice.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import netns
import pytest
import redis
from helpers import wait_until
from pipeline import WorkerProcess, redis_state, wait_flushed

from liftline import Producer
from liftline.cluster.registry import live_members, owners_of
from liftline.settings import Settings
from liftline.store.keys import Keys
from liftline.tickets import Ticket

WHY_NOT = netns.available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no network namespaces: {WHY_NOT}")

KEYS = 400


def member_of(client: redis.Redis, settings: Settings, pid: int) -> str:
    for member_id, record in live_members(client, Keys(settings.cluster)).items():
        if record["pid"] == pid:
            return member_id
    raise AssertionError(f"no member with pid {pid}")


def test_a_cut_off_worker_loses_its_partitions_and_is_fenced_when_it_returns(
        settings: Settings, endpoints: Any, redis_client: redis.Redis, tmp_path: Path) -> None:
    settings = settings.replace(partitions=4, heartbeat_s=0.5, member_ttl_s=2.0,
                                flush_interval_ms=200)
    keys = Keys(settings.cluster)
    amqp_port = urllib.parse.urlsplit(settings.amqp_url).port
    redis_port = urllib.parse.urlsplit(settings.redis_url).port
    assert amqp_port and redis_port
    with netns.second_host([amqp_port, redis_port]) as (ns, relay):
        inside = settings.replace(
            amqp_url=f"amqp://guest:guest@{ns.host_ip}:{relay.ports[amqp_port]}/%2F",
            redis_url=f"redis://{ns.host_ip}:{relay.ports[redis_port]}/0")
        far = WorkerProcess(inside, tmp_path, launcher=tuple(ns.argv()))
        near: WorkerProcess | None = None
        try:
            far.wait_registered(redis_client)
            far_id = member_of(redis_client, settings, far.pid)
            near = WorkerProcess(settings, tmp_path)
            near.wait_registered(redis_client)
            wait_until(lambda: far_id in owners_of(redis_client, keys).values(), 30,
                       message="the far worker holding partitions")
            confirmed: Counter[str] = Counter()
            tickets: list[Ticket] = []
            stop = threading.Event()

            def load() -> None:
                with Producer(settings) as producer:
                    futures = []
                    deadline = time.monotonic() + 60
                    n = 0
                    while not stop.is_set() and time.monotonic() < deadline:
                        for _ in range(100):
                            key = f"c{n % KEYS}"
                            futures.append((key, producer.submit("incr", key, 1)))
                            n += 1
                        time.sleep(0.02)  # paces the load at about 5,000 writes/s
                    for key, future in futures:
                        tickets.append(future.result(60))
                        confirmed[key] += 1

            writer = threading.Thread(target=load)
            writer.start()
            wait_until(lambda: redis_client.hget(keys.state(0), "flushed_at"), 30,
                       message="flushes under load")
            ns.cut()
            cut_at = time.monotonic()
            wait_until(lambda: far_id not in owners_of(redis_client, keys).values(), 30,
                       message="the far worker's partitions claimed by the near one")
            moved_s = time.monotonic() - cut_at
            time.sleep(2.0)  # the scenario: the cut lasts a while after the move
            ns.heal()
            fenced = wait_until(
                lambda: [line for line in far.log().splitlines()
                         if "refused" in line or "claimed by another worker" in line],
                30, message="the far worker fenced after the partition healed")
            stop.set()
            writer.join(120)
            assert not writer.is_alive()
            wait_flushed(redis_client, settings, tickets, timeout_s=90)
            assert redis_state(redis_client, settings) == dict(confirmed)
            print(f"\npartition: the near worker owned every partition {moved_s:.2f} s after "
                  f"the cut (member TTL {settings.member_ttl_s} s); {len(tickets):,} writes "
                  f"confirmed, all in Redis once; the far worker: {fenced[0].strip()[-120:]}")
        finally:
            far.kill()
            if near is not None:
                near.terminate(30)
