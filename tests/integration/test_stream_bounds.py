"""Stream offsets for ``liftline status`` (real RabbitMQ): one stream the broker
refuses to read costs that stream's bounds only.

The refusal is made exact with a user whose read permission leaves out one stream,
through the management API; on a cluster the same refusal comes from a node whose
replica of the stream is restarting ("does not have a replica on the local node").
"""

from __future__ import annotations

import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pika
import pytest

from liftline import status
from liftline.cluster import bootstrap
from liftline.queue.inspect import stream_bounds
from liftline.queue.management import management_request
from liftline.queue.topology import Names
from liftline.servers.base import Endpoints
from liftline.settings import Settings

WRITES = {0: 3, 1: 1, 2: 5}  # per partition; partition 3 gets none


def management(endpoints: Endpoints, method: str, path: str, body: object | None) -> None:
    if endpoints.management_url is None:
        pytest.skip("needs the broker's management API to add a user")
    request = management_request(endpoints.management_url, path, method=method, body=body)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (201, 204), response.status


@pytest.fixture
def refused_on_p2(endpoints: Endpoints, settings: Settings) -> Iterator[Settings]:
    """The test's streams, written to, and settings of a user that may read every
    stream but partition 2's."""
    small = settings.replace(partitions=4)
    bootstrap.prepare(small)
    names = Names(small.cluster)
    conn = pika.BlockingConnection(pika.URLParameters(small.amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for p, count in WRITES.items():
            for _ in range(count):
                channel.basic_publish("", names.stream(p), b"entry")
    finally:
        conn.close()
    user, password = f"reader-{secrets.token_hex(3)}", secrets.token_hex(8)
    management(endpoints, "PUT", f"/api/users/{user}", {"password": password, "tags": ""})
    vhost = urllib.parse.quote(urllib.parse.unquote(
        urllib.parse.urlsplit(small.amqp_url).path.lstrip("/")) or "/", safe="")
    refused = names.stream(2).replace(".", r"\.")
    management(endpoints, "PUT", f"/api/permissions/{vhost}/{user}",
               {"configure": "", "write": "", "read": f"^(?!{refused}$).*"})
    amqp = urllib.parse.urlsplit(small.amqp_url)
    url = amqp._replace(netloc=f"{user}:{password}@{amqp.hostname}:{amqp.port}").geturl()
    try:
        yield small.replace(amqp_url=url)
    finally:
        management(endpoints, "DELETE", f"/api/users/{user}", None)


def test_a_refused_stream_has_an_error_and_the_others_their_bounds(
        refused_on_p2: Settings) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(refused_on_p2.amqp_url))
    try:
        bounds = stream_bounds(conn, Names(refused_on_p2.cluster), list(range(4)))
    finally:
        conn.close()
    assert bounds[2].error is not None and "ACCESS_REFUSED" in bounds[2].error
    assert (bounds[2].first, bounds[2].last) == (-1, -1)
    assert [(bounds[p].first, bounds[p].last, bounds[p].error) for p in (0, 1, 3)] == [
        (0, WRITES[0] - 1, None), (0, WRITES[1] - 1, None), (-1, -1, None)]


def test_status_warns_of_the_refused_stream_and_shows_the_rest(
        refused_on_p2: Settings) -> None:
    shown = status.gather(refused_on_p2)
    assert not any(u["server"] == "rabbitmq" for u in shown["unreachable"]), shown["unreachable"]
    rows = {r["partition"]: r for r in shown["partition_state"]}
    assert rows[2]["stream_error"] and rows[2]["stream_tail"] == -1
    assert [(rows[p]["stream_tail"], rows[p]["stream_error"]) for p in (0, 1, 3)] == [
        (WRITES[0] - 1, None), (WRITES[1] - 1, None), (-1, None)]
    assert any(w.startswith("partition 2: stream offsets unreadable (403 ACCESS_REFUSED")
               for w in shown["warnings"]), shown["warnings"]
