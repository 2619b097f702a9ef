"""The ASGI application: routes, bearer-token check, metrics, JSON errors, lifespan.

``create_app(settings, app)`` builds it for one process; uvicorn's workers call
:func:`app_from_env` (settings from ``LIFTLINE_*``, the App from ``ingest_app``).
An App's module may define ``ingest_routes(api, service)`` to add routes of its
own (see ``examples/skiresort``); they get the same auth, metrics and errors.
A layer above may add routes after the generic ones (``late_routes``): the
dashboard does (``liftline.dashboard.entry``). Routes registered with
``raw=True`` (the ski app's lift-ride POST) are answered by
:class:`~liftline.ingest.fast.FastPaths` before Starlette's layers, with the
same token check, body checks, error answers and metrics.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liftline.app import App, load_app
from liftline.errors import ConfigError
from liftline.ingest import jobs_routes, routes
from liftline.ingest.fast import Access, FastPaths, server_error
from liftline.ingest.metrics import Metrics
from liftline.ingest.openapi import Api
from liftline.ingest.service import IngestService
from liftline.ingest.validation import ApiError
from liftline.settings import Settings

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})


class Gate:
    """Pure ASGI middleware: bearer tokens (when configured) and request metrics.

    Every path but ``open_paths`` needs ``Authorization: Bearer <token>`` when
    ``tokens`` is not empty; a request without a good one is answered 401 (JSON).
    """

    def __init__(self, app: ASGIApp, tokens: list[str], metrics: Metrics,
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.access = Access(tokens, open_paths)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_and_count(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if not self.access.allows(scope):
                await self.access.refusal()(scope, receive, send_and_count)
            else:
                await self.app(scope, receive, send_and_count)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.request(scope["method"], label, status, time.perf_counter() - began)


class IngestApp(Starlette):
    """Starlette, with the raw routes (``fast``) answered before its layers."""

    fast: FastPaths | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fast is not None:
            found = self.fast.find(scope)
            if found is not None:
                await self.fast.handle(*found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "no_route", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return ApiError(exc.status_code, code, f"{exc.detail}: {request.method} {request.url.path}",
                    headers=dict(exc.headers or {})).response()


def _server_error(request: Request, exc: Exception) -> Response:
    return server_error(request.method, request.url.path, exc)


ERROR_HANDLERS: dict[Any, Any] = {ApiError: _api_error, HTTPException: _http_error,
                                  Exception: _server_error}


def parse_tokens(text: str) -> list[str]:
    """The bearer tokens of a comma-separated setting (blanks dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def create_app(settings: Settings, app: App | None = None, *,
               extra_routes: Any = None, late_routes: Any = None) -> IngestApp:
    """The ingest ASGI app for one process; connects on startup, closes on shutdown.

    ``extra_routes(api, service)`` adds routes before the generic ones (default:
    the App module's ``ingest_routes``, if it has one); ``late_routes(api,
    service)`` after them. Routes registered with ``auth=False`` need no token.
    """
    service = IngestService(settings, app)
    tokens = parse_tokens(settings.ingest_tokens)
    api = Api("liftline ingest" + (f" ({app.name})" if app else ""), "1",
              partitions=settings.partitions, tokens=bool(tokens))
    # The app's routes first: Starlette tries routes in order, and an app's hot
    # route (a lift ride) should not pay for a dozen failed matches first.
    if extra_routes is not None:
        extra_routes(api, service)
    routes.register(api, service.ops, settings.ingest_max_batch_writes)
    jobs_routes.register(api, app)
    if late_routes is not None:
        late_routes(api, service)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        settings.log_start("ingest")
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    starlette = IngestApp(routes=api.routes, lifespan=lifespan,
                          exception_handlers=ERROR_HANDLERS)
    starlette.router.redirect_slashes = False  # an API answers 404, not a redirect
    open_paths = OPEN_PATHS | frozenset(api.open_paths)
    starlette.add_middleware(Gate, tokens=tokens, metrics=service.metrics,
                             open_paths=open_paths)
    if api.raw_routes:
        starlette.fast = FastPaths(api.raw_routes, service, Access(tokens, open_paths),
                                   service.metrics)
    starlette.state.service = service
    starlette.state.api = api
    return starlette


def routes_of(spec: str) -> Any:
    """The ``ingest_routes`` function beside the App at ``spec`` (None if it has none)."""
    module = importlib.import_module(spec.partition(":")[0])
    hook = getattr(module, "ingest_routes", None)
    if hook is not None and not callable(hook):
        raise ConfigError(f"{spec}: ingest_routes must be a function (api, service)")
    return hook


def app_from_env(late_routes: Any = None) -> IngestApp:
    """Factory for uvicorn (``--factory``): settings from LIFTLINE_*, App from ingest_app."""
    settings = Settings.from_env()
    if not settings.ingest_app:
        return create_app(settings, late_routes=late_routes)
    return create_app(settings, load_app(settings.ingest_app),
                      extra_routes=routes_of(settings.ingest_app), late_routes=late_routes)
