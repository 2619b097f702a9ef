"""Raw routes: an app's hot route answered from the ASGI scope, before Starlette's layers.

A route registered with ``Api.route(..., raw=True)`` is a handler that takes a
:class:`Call` (the service, the path parameters, the JSON body already decoded)
and returns an :class:`Answer`. :class:`FastPaths` runs it straight from the
ASGI scope, ahead of Starlette's middleware, request, routing and response
objects, which cost about as much CPU per request as the write itself (profiled
on the lift-ride POST). It does what those layers would have done, with the
same code: the bearer-token check of :class:`Access` (the Gate's), the body
checks of :mod:`liftline.ingest.validation` (415, 413, 400), the route's own
error answers (``errors``), 500 for anything else (logged) and the per-route
metrics. The handler also sits in Starlette's routing table (:meth:`RawRoute.endpoint`):
a request the fast path does not take (under a root path) is answered the same
way, and a 405 on the path lists the route's method in ``Allow``.

Raw routes are tried before every Starlette route; their paths take plain
``{name}`` segments only (a non-empty segment, as Starlette's default).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from liftline.ingest.validation import (
    ApiError,
    check_json_headers,
    decode_json,
    read_json,
    too_large,
)

if TYPE_CHECKING:
    from liftline.ingest.metrics import Metrics

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]


class Access:
    """Bearer tokens (when configured): every path but ``open_paths`` needs
    ``Authorization: Bearer <token>``."""

    def __init__(self, tokens: list[str], open_paths: frozenset[str]) -> None:
        self.tokens = [t.encode() for t in tokens]
        self.open_paths = open_paths

    def allows(self, scope: Scope) -> bool:
        return not self.tokens or scope["path"] in self.open_paths or self._authorized(scope)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                token = token.strip()
                return any(hmac.compare_digest(token, t) for t in self.tokens)
        return False

    @staticmethod
    def refusal() -> Response:
        """The 401 (JSON, with ``WWW-Authenticate``)."""
        return ApiError(401, "unauthorized", "send Authorization: Bearer <token>",
                        headers={"WWW-Authenticate": 'Bearer realm="liftline"'}).response()


def server_error(method: str, path: str, exc: BaseException) -> Response:
    """The 500 for an unexpected exception, logged with its traceback."""
    log.exception("unhandled error in %s %s", method, path, exc_info=exc)
    return ApiError(500, "internal", "internal error (logged)").response()


class Call:
    """What a raw handler gets: the service, the path parameters and the decoded body."""

    __slots__ = ("service", "params", "body")

    def __init__(self, service: Any, params: Mapping[str, str], body: Any) -> None:
        self.service = service
        self.params = params
        self.body = body


class Answer:
    """A raw handler's answer; ``headers`` lower-case, without Content-Length."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers | None = None, body: bytes = b"") -> None:
        self.status = status
        self.headers = headers or []
        self.body = body


RawHandler = Callable[[Call], Awaitable[Answer]]
ErrorAnswer = Callable[[ApiError], Response]


class RawRoute:
    """One raw route: ``method path``, its handler and how its ApiErrors are answered."""

    def __init__(self, path: str, method: str, handler: RawHandler,
                 errors: ErrorAnswer | None = None) -> None:
        self.path = path
        self.method = method.upper()
        self.handler = handler
        self.errors: ErrorAnswer = errors or ApiError.response
        self.parts = path.split("/")
        self._literals: list[tuple[int, str]] = []  # (segment index, text)
        self._params: list[tuple[int, str]] = []  # (segment index, parameter name)
        for n, part in enumerate(self.parts):
            if part.startswith("{") and part.endswith("}"):
                if ":" in part:
                    raise ValueError(f"{path}: raw routes take plain {{name}} segments")
                self._params.append((n, part[1:-1]))
            else:
                self._literals.append((n, part))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters when ``parts`` (a path split at ``/``, as many segments as
        the route's) is this route's path."""
        for n, text in self._literals:
            if parts[n] != text:
                return None
        params = {}
        for n, name in self._params:
            got = parts[n]
            if not got:
                return None
            params[name] = got
        return params

    def endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        """The route as a Starlette endpoint (same checks, same answers)."""

        async def run(request: Request) -> Response:
            service = request.app.state.service
            try:
                body = await read_json(request, service.settings.ingest_max_body_bytes)
                answer = await self.handler(Call(service, request.path_params, body))
            except ApiError as exc:
                return self.errors(exc)
            response = Response(answer.body, answer.status)
            response.raw_headers[:0] = answer.headers
            return response

        run.__name__ = self.handler.__name__
        return run


class FastPaths:
    """Finds and runs raw routes from the ASGI scope (see the module's docstring)."""

    def __init__(self, routes: list[RawRoute], service: Any, access: Access,
                 metrics: Metrics) -> None:
        self.service = service
        self.access = access
        self.metrics = metrics
        self._routes: dict[tuple[str, int], list[RawRoute]] = {}
        for route in routes:
            self._routes.setdefault((route.method, len(route.parts)), []).append(route)

    def find(self, scope: Scope) -> tuple[RawRoute, dict[str, str]] | None:
        if not self._routes or scope.get("root_path"):
            return None
        parts = scope["path"].split("/")
        for route in self._routes.get((scope["method"], len(parts)), ()):
            params = route.match(parts)
            if params is not None:
                return route, params
        return None

    async def handle(self, route: RawRoute, params: dict[str, str], scope: Scope,
                     receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        status = 500  # as the Gate counts a request that got no answer
        try:
            if not self.access.allows(scope):
                status = 401
                await self.access.refusal()(scope, receive, send)
                return
            try:
                body = await self._body(scope, receive)
                if body is _GONE:
                    return
                answer = await route.handler(Call(self.service, params, body))
            except ApiError as exc:
                response = route.errors(exc)
            except Exception as exc:
                response = server_error(scope["method"], scope["path"], exc)
            else:
                status = answer.status
                await send({"type": "http.response.start", "status": status, "headers": [
                    *answer.headers, (b"content-length", b"%d" % len(answer.body))]})
                await send({"type": "http.response.body", "body": answer.body})
                return
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.metrics.request(scope["method"], route.path, status,
                                 time.perf_counter() - began)

    async def _body(self, scope: Scope, receive: Receive) -> Any:
        """The JSON body, checked as :func:`~liftline.ingest.validation.read_json` does;
        ``_GONE`` if the client went away first."""
        ctype = length = None
        for name, value in scope["headers"]:
            if name == b"content-type" and ctype is None:
                ctype = value.decode("latin-1")
            elif name == b"content-length" and length is None:
                length = value.decode("latin-1")
        limit = self.service.settings.ingest_max_body_bytes
        check_json_headers(ctype or "", length, limit)
        message = await receive()
        raw = message.get("body", b"")
        if message.get("more_body", False):  # more than one chunk: not the usual case
            chunks, size = [raw], len(raw)
            while message.get("more_body", False):
                message = await receive()
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > limit:
                    raise too_large(limit)
            raw = b"".join(chunks)
        if message["type"] == "http.disconnect":
            return _GONE
        if len(raw) > limit:
            raise too_large(limit)
        return decode_json(raw)


_GONE = object()
