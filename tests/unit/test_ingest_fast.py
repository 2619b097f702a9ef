"""Raw routes (liftline.ingest.fast): answered before Starlette, the same as through it.

Every request below goes to the same app twice: once with its raw routes taken
from the ASGI scope (``app.fast``), once with them left to Starlette's routing
(the route's endpoint); the status, headers and body must be the same, and the
metrics must count both under the route's path.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from liftline.ingest.app import ERROR_HANDLERS, OPEN_PATHS, Gate, IngestApp
from liftline.ingest.fast import Access, Answer, Call, FastPaths, RawRoute
from liftline.ingest.metrics import Metrics
from liftline.ingest.openapi import Api
from liftline.ingest.validation import ApiError, bounded_int, invalid, require_object
from liftline.settings import Settings

PATH = "/things/{thingID}/parts/{partID}"


class FakeService:
    def __init__(self) -> None:
        self.settings = Settings(ingest_max_body_bytes=64)
        self.metrics = Metrics()


def teapot(exc: ApiError) -> Response:
    """A route's own error answers (as the ski routes have theirs)."""
    return Response(json.dumps({"message": exc.message}), 418 if exc.status == 422
                    else exc.status, media_type="application/json")


def build(tokens: list[str], fast: bool) -> tuple[IngestApp, FakeService]:
    service = FakeService()
    api = Api("t", "1")

    @api.route(PATH, "POST", summary="add", responses={201: "ok"}, body={"type": "object"},
               raw=True, errors=teapot)
    async def add(call: Call) -> Answer:
        body = require_object(call.body)
        n = bounded_int(body.get("n"), "n", 1, 9)
        if n == 9:
            raise RuntimeError("nine")
        if n == 8:
            raise invalid("n", "not eight")
        return Answer(201, [(b"x-thing", call.params["thingID"].encode())],
                      f"{call.params['partID']}:{n}".encode())

    @api.route(PATH, "GET", summary="get", responses={200: "ok"})
    async def get(request: Request) -> Response:
        return Response(b"got", 200)

    app = IngestApp(routes=api.routes, exception_handlers=ERROR_HANDLERS)
    app.router.redirect_slashes = False
    app.add_middleware(Gate, tokens=tokens, metrics=service.metrics, open_paths=OPEN_PATHS)
    app.state.service = service
    if fast:
        app.fast = FastPaths(api.raw_routes, service, Access(tokens, OPEN_PATHS),
                             service.metrics)
    return app, service


def call(app: IngestApp, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None, chunks: int = 1) -> tuple[int, list[Any], bytes]:
    head = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": head,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    step = max(1, -(-len(body) // chunks))
    parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    incoming = [{"type": "http.request", "body": p, "more_body": n < len(parts) - 1}
                for n, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        asyncio.run(app(scope, receive, send))
    except RuntimeError:  # Starlette re-raises after its 500 (for the server's log)
        assert sent, "no answer"
    start = sent[0]
    return (start["status"], sorted(start["headers"]),
            b"".join(m.get("body", b"") for m in sent[1:]))


JSON = {"content-type": "application/json"}
CASES = [
    ("POST", "/things/a/parts/b", b'{"n": 3}', JSON, 201),
    ("POST", "/things/a/parts/b", b'{"n": 3}', {}, 201),  # no content type: taken as JSON
    ("POST", "/things/a/parts/b", b'{"n": 3}', {"content-type": "text/plain"}, 415),
    ("POST", "/things/a/parts/b", b'{"n": 3}', {**JSON, "content-length": "65"}, 413),
    ("POST", "/things/a/parts/b", b'{"n": 3' + b" " * 70 + b"}", JSON, 413),
    ("POST", "/things/a/parts/b", b"", JSON, 400),
    ("POST", "/things/a/parts/b", b'{"n": 3', JSON, 400),
    ("POST", "/things/a/parts/b", b"[1]", JSON, 418),
    ("POST", "/things/a/parts/b", b'{"n": 0}', JSON, 418),
    ("POST", "/things/a/parts/b", b'{"n": 8}', JSON, 418),
    ("POST", "/things/a/parts/b", b'{"n": 9}', JSON, 500),
    ("POST", "/things/a/parts/", b'{"n": 3}', JSON, 404),
    ("POST", "/things/a/parts/b/", b'{"n": 3}', JSON, 404),
    ("POST", "/things/a/part/b", b'{"n": 3}', JSON, 404),
    ("GET", "/things/a/parts/b", b"", {}, 200),
    ("PUT", "/things/a/parts/b", b"", {}, 405),
]


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), CASES)
def test_raw_routes_answer_as_starlette_would(method, path, body, headers, status, chunks,
                                              caplog):
    fast, fast_service = build([], fast=True)
    slow, slow_service = build([], fast=False)
    answer = call(fast, method, path, body, headers, chunks)
    assert answer[0] == status, answer
    assert answer == call(slow, method, path, body, headers, chunks)
    if status == 201:
        assert answer == (201, [(b"content-length", b"3"), (b"x-thing", b"a")], b"b:3")
    if status == 500:
        assert json.loads(answer[2])["error"] == "internal"
        assert "unhandled error in POST" in caplog.text
    if status == 405:
        assert sorted(dict(answer[1])[b"allow"].split(b", ")) == [b"GET", b"HEAD", b"POST"]
    assert fast_service.metrics.requests == slow_service.metrics.requests
    assert sum(fast_service.metrics.requests.values()) == 1


def test_raw_routes_are_counted_under_their_path():
    app, service = build([], fast=True)
    for n in (1, 2, 8):
        call(app, "POST", f"/things/{n}/parts/x", b'{"n": %d}' % n, JSON)
    assert dict(service.metrics.requests) == {("POST", PATH, 201): 2, ("POST", PATH, 418): 1}
    assert service.metrics.latency[("POST", PATH)].count == 3


@pytest.mark.parametrize(("auth", "status"), [
    (None, 401), ("Bearer wrong", 401), ("Basic s3cret", 401), ("Bearer s3cret", 201)])
def test_raw_routes_need_the_token(auth, status):
    fast, _ = build(["s3cret"], fast=True)
    slow, _ = build(["s3cret"], fast=False)
    headers = {**JSON, **({"authorization": auth} if auth else {})}
    answer = call(fast, "POST", "/things/a/parts/b", b'{"n": 1}', headers)
    assert answer[0] == status
    assert answer == call(slow, "POST", "/things/a/parts/b", b'{"n": 1}', headers)
    if status == 401:
        assert (b"www-authenticate", b'Bearer realm="liftline"') in answer[1]


def test_a_client_gone_before_its_body_gets_no_answer():
    app, service = build([], fast=True)
    scope = {"type": "http", "method": "POST", "path": "/things/a/parts/b", "root_path": "",
             "headers": []}
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent == []
    assert dict(service.metrics.requests) == {("POST", PATH, 500): 1}


def test_raw_routes_take_plain_segments_only():
    with pytest.raises(ValueError, match="plain"):
        RawRoute("/a/{n:int}", "POST", None)  # type: ignore[arg-type]
    route = RawRoute("/a/{x}/b/{y}", "post", None)  # type: ignore[arg-type]
    assert route.match(["", "a", "1", "b", "2"]) == {"x": "1", "y": "2"}
    assert route.match(["", "a", "", "b", "2"]) is None
    assert route.match(["", "a", "1", "c", "2"]) is None


def test_the_fast_path_answers_without_starlettes_routes():
    app, _ = build([], fast=True)
    app.router.routes.clear()
    assert call(app, "POST", "/things/a/parts/b", b'{"n": 2}', JSON)[0] == 201
    assert call(app, "GET", "/things/a/parts/b")[0] == 404
    app.fast = None
    assert call(app, "POST", "/things/a/parts/b", b'{"n": 2}', JSON)[0] == 404
