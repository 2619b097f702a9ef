"""What a cluster needs before it takes writes: its partition count fixed in Redis
and its streams declared in RabbitMQ.

Every component that may be the first to touch a cluster (a producer, the HTTP
service, a worker, the autoscaler, ``liftline up``) prepares it here, so all of
them create it alike and all refuse a client whose partition count differs.
Both steps are idempotent.
"""

from __future__ import annotations

from typing import Any

import redis

from liftline.queue import topology
from liftline.queue.connection import connect_blocking
from liftline.queue.topology import Names
from liftline.settings import Settings
from liftline.store.redis_store import RedisStore, connect


def check_partitions(client: redis.Redis, settings: Settings) -> int:
    """Create the cluster with ``settings.partitions`` and ``producer_id_ttl_s``, or
    check it has the same; returns P. ConfigError when it differs."""
    return RedisStore(client, settings.cluster).ensure_cluster(
        settings.partitions, settings.producer_id_ttl_s)


def declare(channel: Any, settings: Settings) -> Names:
    """Declare the cluster's exchange and one stream per partition, bound."""
    return topology.declare(channel, settings)


def prepare(settings: Settings, *, name: str = "liftline-setup") -> int:
    """Both steps, on connections of its own (opened and closed here); returns P.

    Blocks while the servers are unreachable, within the reconnect budget
    (BrokerUnavailable after it; StoreUnavailable when Redis does not answer).
    """
    client = connect(settings.redis_url)
    try:
        partitions = check_partitions(client, settings)
    finally:
        client.close()
    conn = connect_blocking(settings, name=name)
    try:
        declare(conn.channel(), settings)
    finally:
        conn.close()
    return partitions
