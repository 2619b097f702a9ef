"""Pure parts of the ingest service: write parsing, metrics text, the OpenAPI document."""

from __future__ import annotations

import pytest

from liftline.codec import BUILTIN_OPS
from liftline.ingest import routes
from liftline.ingest.metrics import Metrics
from liftline.ingest.openapi import Api
from liftline.ingest.validation import ApiError, parse_write
from liftline.settings import Settings


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ({"op": "set", "value": 1}, "key"),
    ({"op": "set", "key": ""}, "key"),
    ({"key": "a", "value": 1}, "op"),
    ({"op": "nope", "key": "a", "value": 1}, "op"),
    ({"op": "incr", "key": "a", "value": "1"}, "value"),
    ({"op": "merge", "key": "a", "value": [1]}, "value"),
    ({"op": "set", "key": "a"}, "value"),
    ({"op": "cas", "key": "a", "value": 1}, "expected_version"),
    ({"op": "cas", "key": "a", "value": 1, "expected_version": -1}, "expected_version"),
    ({"op": "append", "key": "a", "value": 1, "cap": 0}, "cap"),
    ({"op": "set", "key": "a", "value": 1, "cap": 3}, "cap"),
    ({"op": "set", "key": "a", "value": 1, "extra": 3}, "extra"),
])
def test_bad_writes_name_the_field(body, field):
    with pytest.raises(ApiError) as caught:
        parse_write(body, BUILTIN_OPS)
    assert (caught.value.status, caught.value.field) == (422, field)
    with pytest.raises(ApiError) as nested:
        parse_write(body, BUILTIN_OPS, "writes[4]")
    assert nested.value.field in ("writes[4]", f"writes[4].{field}")


def test_good_writes_parse():
    assert parse_write({"op": "delete", "key": "a"}, BUILTIN_OPS) == ("delete", "a", None, None)
    assert parse_write({"op": "append", "key": "a", "value": 1, "cap": 2}, BUILTIN_OPS) == (
        "append", "a", 1, 2)
    assert parse_write({"op": "cas", "key": "a", "value": 1, "expected_version": 0},
                       BUILTIN_OPS) == ("cas", "a", 1, 0)
    assert parse_write({"op": "lift_ride", "key": "a", "value": {}}, None)[0] == "lift_ride"


def test_metrics_render_prometheus_text():
    metrics = Metrics("p1")
    metrics.request("POST", "/v1/writes", 202, 0.003)
    metrics.request("POST", "/v1/writes", 202, 20.0)
    metrics.count_writes("accepted", 2)
    metrics.gauge("pending_writes", lambda: 7)
    text = metrics.render()
    assert ('liftline_http_requests_total{producer="p1",method="POST",route="/v1/writes",'
            'status="202"} 2') in text
    assert ('liftline_http_request_seconds_bucket{producer="p1",method="POST",'
            'route="/v1/writes",le="0.005"} 1') in text
    assert 'le="+Inf"} 2' in text
    assert 'liftline_ingest_writes_total{producer="p1",outcome="accepted"} 2' in text
    assert 'liftline_ingest_pending_writes{producer="p1"} 7' in text


def test_openapi_document_lists_routes_and_errors():
    api = Api("t", "1", tokens=True)
    routes.register(api, BUILTIN_OPS, 1000)
    doc = api.document()
    post = doc["paths"]["/v1/writes"]["post"]
    assert {"202", "400", "401", "413", "415", "422", "503"} <= set(post["responses"])
    assert "{key}" in "".join(doc["paths"]) and ":path" not in "".join(doc["paths"])
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["security"] == [{"bearer": []}]


def test_openapi_declares_bearer_tokens_only_when_the_service_has_them():
    api = Api("t", "1", tokens=False)
    routes.register(api, BUILTIN_OPS, 1000)
    doc = api.document()
    assert "security" not in doc and "securitySchemes" not in doc["components"]
    for methods in doc["paths"].values():
        for operation in methods.values():
            assert "401" not in operation["responses"] and "security" not in operation


def test_settings_survive_the_trip_through_the_environment():
    settings = Settings(cluster="c1", partitions=8, ingest_port=9000, ingest_tokens="a,b",
                        ingest_publish_timeout_s=2.5)
    assert Settings.from_env(settings.to_env()) == settings


def test_frames_of_one_loop_turn_leave_in_one_write_in_order():
    """CoalescingAsyncioConnection: pika emits a message as three frames; they (and
    everything else emitted in the same turn) go to the transport as one write."""
    from liftline.queue.loops import CoalescingAsyncioConnection

    class Loop:
        def __init__(self):
            self.soon = []

        def call_soon(self, fn):
            self.soon.append(fn)

    class NBIO:
        def __init__(self, loop):
            self.loop = loop

        def get_native_ioloop(self):
            return self.loop

    class Transport:
        def __init__(self):
            self.writes = []

        def write(self, data):
            self.writes.append(data)

    loop, transport = Loop(), Transport()
    conn = object.__new__(CoalescingAsyncioConnection)  # no socket: the buffering alone
    conn._out, conn._nbio, conn._transport = [], NBIO(loop), transport
    for frame in (b"method1", b"header1", b"body1", b"method2"):
        conn._adapter_emit_data(frame)
    assert transport.writes == [] and len(loop.soon) == 1  # one flush per turn
    loop.soon.pop()()
    assert transport.writes == [b"method1header1body1method2"]
    conn._adapter_emit_data(b"next")
    loop.soon.pop()()
    assert transport.writes == [b"method1header1body1method2", b"next"]
    conn._transport = None  # the connection went away: frames are dropped, not raised
    conn._adapter_emit_data(b"late")
    loop.soon.pop()()
    assert transport.writes[-1] == b"next"
