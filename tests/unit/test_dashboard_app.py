"""The dashboard's Hub (one shared reading, off the loop) and its routes behind the
token gate, driven as ASGI with a made-up collector: no servers."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import pytest

from liftline.dashboard import entry
from liftline.dashboard.hub import Hub
from liftline.dashboard.page import render
from liftline.errors import BrokerUnavailable, NotFound
from liftline.settings import Settings

SETTINGS = Settings(cluster="unit", partitions=2)


def fake_reading(at: float) -> dict[str, Any]:
    return {"at": at, "took_s": 0.0, "unreachable": [],
            "status": {"cluster": "unit", "partitions": 1, "replicas": 1, "members": [],
                       "partition_state": [], "warnings": [], "autoscaler": None},
            "redis": {}, "rabbitmq": {}, "jobs": {"stats": [], "dead": [], "watched": []},
            "autoscale_samples": []}


class Collector:
    """Counts its calls; each takes ``delay_s`` in its thread (it must not block the loop)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def __call__(self, settings: Settings, *, watched: list[str],
                 dead_lock: threading.Lock) -> dict[str, Any]:
        self.calls.append(watched)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return fake_reading(time.time())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_viewers_share_one_reading_at_most_once_per_interval() -> None:
    collector, clock = Collector(delay_s=0.2), Clock()
    hub = Hub(SETTINGS, collector=collector, clock=clock)

    async def scenario() -> None:
        ticks = 0

        async def ticker() -> None:  # the loop keeps turning while a reading runs
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(ticker())
        views = await asyncio.gather(*(hub.current() for _ in range(50)))
        assert len(collector.calls) == 1 and all(v is views[0] for v in views)
        assert ticks >= 10, "the reading ran off the event loop"
        clock.now = 0.5
        assert await hub.current() is views[0] and len(collector.calls) == 1
        clock.now = 1.01
        await hub.current()
        assert len(collector.calls) == 2
        beat.cancel()

    asyncio.run(scenario())
    assert "MainThread" not in collector.threads


def test_a_viewer_that_goes_away_does_not_cancel_the_others_reading() -> None:
    collector = Collector(delay_s=0.2)
    hub = Hub(SETTINGS, collector=collector)

    async def scenario() -> None:
        impatient = asyncio.create_task(hub.current())
        patient = asyncio.create_task(hub.current())
        await asyncio.sleep(0.05)
        impatient.cancel()
        view = await patient
        assert view["cluster"] == "unit"
        assert len(collector.calls) == 1

    asyncio.run(scenario())


def test_replay_is_followed_and_the_next_view_is_read_afresh() -> None:
    collector, clock = Collector(), Clock()
    replayed: list[list[str]] = []

    def replayer(settings: Settings, ids: list[str]) -> list[str]:
        replayed.append(ids)
        if ids == ["gone"]:
            raise NotFound("not in the dead-letter queue: gone")
        return ids

    hub = Hub(SETTINGS, collector=collector, replayer=replayer, clock=clock)

    async def scenario() -> None:
        await hub.current()
        assert await hub.replay("j1") == ["j1"]
        await hub.current()  # same clock: only the replay makes it read again
        assert collector.calls == [[], ["j1"]]
        with pytest.raises(NotFound):
            await hub.replay("gone")

    asyncio.run(scenario())
    assert replayed == [["j1"], ["gone"]]


# -- the routes, as ASGI --------------------------------------------------------
def call(app: Any, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    answer = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], answer, b"".join(m.get("body", b"") for m in sent[1:])


def app_with(replayer: Any = None, tokens: tuple[str, ...] = ("t1",)) -> Any:
    hub = Hub(SETTINGS, collector=Collector(), replayer=replayer or (lambda s, ids: ids))
    return entry.create_app(SETTINGS, list(tokens), hub)


JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": "Bearer t1"}


def test_the_page_is_open_and_the_data_and_replay_need_a_token() -> None:
    app = app_with()
    status, headers, body = call(app, "GET", "/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    for method, path, sent in (("GET", "/dashboard/api/view", b""),
                               ("POST", "/dashboard/api/replay", b'{"job_id": "j1"}')):
        for auth in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dDE="}):
            status, headers, body = call(app, method, path, sent, {**JSON, **auth})
            assert status == 401, (path, auth)
            assert json.loads(body)["error"] == "unauthorized"
            assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = call(app, "GET", "/dashboard/api/view", headers=AUTH)
    assert status == 200 and json.loads(body)["cluster"] == "unit"
    status, _, body = call(app, "POST", "/dashboard/api/replay", b'{"job_id": "j1"}',
                           {**JSON, **AUTH})
    assert status == 200 and json.loads(body) == {"replayed": ["j1"]}


def test_without_tokens_everything_is_open() -> None:
    app = app_with(tokens=())
    assert call(app, "GET", "/dashboard/api/view")[0] == 200


@pytest.mark.parametrize(("body", "headers", "status", "error"), [
    (b'{"job_id": "j1"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b'{"job_id": "j1"}', {}, 415, "unsupported_media_type"),  # a typeless fetch
    (b'{"job_id": ""}', JSON, 422, "invalid"),
    (b'{"job_id": 7}', JSON, 422, "invalid"),
    (b'{"job_id": "j1", "all": true}', JSON, 422, "invalid"),
    (b'[1]', JSON, 422, "invalid"),
    (b'{', JSON, 400, "bad_json"),
    (b'{"job_id": "gone"}', JSON, 404, "not_found"),
    (b'{"job_id": "down"}', JSON, 503, "unavailable"),
])
def test_replay_refusals(body: bytes, headers: dict[str, str], status: int, error: str) -> None:
    def replayer(settings: Settings, ids: list[str]) -> list[str]:
        if ids == ["gone"]:
            raise NotFound("not in the dead-letter queue: gone")
        if ids == ["down"]:
            raise BrokerUnavailable("RabbitMQ unreachable")
        return ids

    got, _, answer = call(app_with(replayer), "POST", "/dashboard/api/replay", body,
                          {**headers, **AUTH})
    assert (got, json.loads(answer)["error"]) == (status, error)


def test_the_openapi_document_lists_the_dashboard_routes() -> None:
    status, _, body = call(app_with(), "GET", "/openapi.json")
    paths = json.loads(body)["paths"]
    assert {"/dashboard", "/dashboard/api/view", "/dashboard/api/replay"} <= set(paths)
    assert paths["/dashboard"]["get"]["security"] == []  # open, where tokens are needed
    assert "security" not in json.loads(body)["paths"]["/dashboard/api/view"]["get"]
    _, _, bare = call(app_with(tokens=()), "GET", "/openapi.json")
    assert "security" not in json.loads(bare)["paths"]["/dashboard"]["get"]  # no tokens at all


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = render()
    assert "{{" not in page, "every part was inlined"
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page), "no outside address"
    assert page.count("<script>") == 1 and "</script>" in page


def test_the_ingest_app_serves_the_dashboard_after_its_own_routes() -> None:
    from liftline.ingest.app import create_app

    settings = SETTINGS.replace(ingest_tokens="t1")
    app = create_app(settings, late_routes=entry._dashboard_routes)
    paths = [route.path for route in app.routes]
    assert paths.index("/v1/writes") < paths.index("/dashboard"), "the hot routes come first"
    assert call(app, "GET", "/dashboard")[0] == 200
    status, _, body = call(app, "POST", "/dashboard/api/replay", b'{"job_id": "j1"}', JSON)
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    assert call(app, "GET", "/v1/keys/k")[0] == 401, "the ingest routes keep their gate"
