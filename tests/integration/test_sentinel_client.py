"""A client on a ``redis+sentinel://`` URL leaves no connection behind once closed.

redis-py's Sentinel keeps a client per Sentinel for finding the primary; closing the
client it hands out does not close those (one unclosed socket per Sentinel asked, a
ResourceWarning in every test process that used such a URL). liftline's pool closes
them with the client.
"""

from __future__ import annotations

import redis
from helpers import wait_until

from liftline.servers.local_redis import HOST
from liftline.store.redis_store import connect


def test_closing_a_sentinel_client_closes_its_sentinel_connections(sentinel_set):
    def connected() -> int:
        """Client connections to the Sentinels, not counting the one asking."""
        total = 0
        for port in sentinel_set.sentinel_ports:
            asker = redis.Redis(host=HOST, port=port, socket_timeout=2)
            try:
                total += len(asker.client_list()) - 1
            finally:
                asker.close()
        return total

    before = connected()
    client = connect(sentinel_set.url, timeout_s=2)
    assert client.ping()
    assert connected() > before
    client.close()
    wait_until(lambda: connected() == before, 10, interval_s=0.1,
               message="the client's Sentinel connections closed")
