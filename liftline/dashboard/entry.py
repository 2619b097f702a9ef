"""Where the dashboard is served: inside the HTTP ingest service, or on its own.

- :func:`ingest_app_from_env` is the uvicorn factory of ``liftline ingest``:
  the ingest app (``liftline.ingest.app``) with the dashboard's routes after
  its own. It lives here, above both, because ingest sits below status.
- :func:`create_app` / :func:`serve` are ``liftline dashboard``: the dashboard
  alone, for clusters without the HTTP service, behind the same token gate.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from liftline.dashboard import routes
from liftline.dashboard.hub import Hub
from liftline.ingest import app as ingest_app
from liftline.ingest.metrics import Metrics
from liftline.ingest.openapi import Api
from liftline.ingest.routes import json_response
from liftline.ingest.server import listening_socket
from liftline.ingest.service import IngestService
from liftline.settings import Settings

log = logging.getLogger(__name__)

INGEST_FACTORY = "liftline.dashboard.entry:ingest_app_from_env"


def _dashboard_routes(api: Api, service: IngestService) -> None:
    routes.register(api, service.settings)


def ingest_app_from_env() -> Starlette:
    """uvicorn factory: the ingest app of ``LIFTLINE_*`` settings, with ``/dashboard``."""
    return ingest_app.app_from_env(late_routes=_dashboard_routes)


def create_app(settings: Settings, tokens: list[str], hub: Hub | None = None) -> Starlette:
    """The dashboard alone: its routes, ``/healthz`` and ``/openapi.json``.

    With ``tokens``, the JSON view and the replay need ``Authorization: Bearer``
    (the page itself does not: it holds no data, and asks for the token).
    """
    api = Api("liftline dashboard", "1", partitions=settings.partitions, tokens=bool(tokens))
    routes.register(api, settings, hub)

    @api.route("/healthz", "GET", summary="The process is up", tags=("ops",), auth=False,
               standard=(), responses={200: ("alive", {"type": "object"})})
    async def healthz(request: Request) -> Response:
        return json_response({"ok": True})

    @api.route("/openapi.json", "GET", summary="This document", tags=("ops",), auth=False,
               standard=(), responses={200: ("OpenAPI 3.1", {"type": "object"})})
    async def openapi(request: Request) -> Response:
        return json_response(api.document())

    app = Starlette(routes=api.routes, exception_handlers=ingest_app.ERROR_HANDLERS)
    app.router.redirect_slashes = False
    app.add_middleware(ingest_app.Gate, tokens=tokens, metrics=Metrics(),
                       open_paths=frozenset(api.open_paths))
    app.state.api = api
    return app


def serve(settings: Settings, *, host: str, port: int, tokens: list[str],
          log_level: str = "warning", announce: Any = print) -> None:
    """Serve the dashboard on ``host:port`` (0: any free port) until SIGINT/SIGTERM.

    ServerError (before anything is served) when the address cannot be had.
    """
    import uvicorn

    settings.log_start("dashboard")
    sock = listening_socket(host, port)
    config = uvicorn.Config(create_app(settings, tokens), host=host, port=port,
                            log_level=log_level, access_log=False, lifespan="off",
                            server_header=False, timeout_graceful_shutdown=5)
    shown = f"[{host}]" if ":" in host else host
    announce(f"liftline dashboard: http://{shown}:{sock.getsockname()[1]}/dashboard "
             f"({'a bearer token is needed for data and replay' if tokens else 'no token needed'})")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn stopped cleanly, then raised the Ctrl-C it had caught again
