"""The dashboard's routes: the page, its JSON view, and the replay of a dead job.

- ``GET /dashboard``: the page (no data in it, so it needs no token; it asks
  for one when the API answers 401);
- ``GET /dashboard/api/view``: the view the page polls (bearer token when the
  service has tokens);
- ``POST /dashboard/api/replay`` ``{"job_id": …}``: replay one dead job (bearer
  token when the service has tokens); 404 if it is not in the dead-letter queue.

The same routes serve in the HTTP ingest service and in ``liftline dashboard``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from liftline.dashboard.hub import Hub
from liftline.dashboard.page import CSP, render
from liftline.errors import BrokerError, NotFound, StoreError
from liftline.ingest.openapi import Api
from liftline.ingest.routes import json_response
from liftline.ingest.validation import ApiError, invalid, read_json, require_object
from liftline.settings import Settings

PAGE_PATH = "/dashboard"
VIEW_PATH = "/dashboard/api/view"
REPLAY_PATH = "/dashboard/api/replay"
REPLAY = {"type": "object", "required": ["job_id"], "additionalProperties": False,
          "properties": {"job_id": {"type": "string", "minLength": 1, "maxLength": 128}}}
RETRY_AFTER_S = "2"


def register(api: Api, settings: Settings, hub: Hub | None = None) -> Hub:
    """Add the dashboard's routes to ``api``; returns the Hub behind them."""
    hub = hub or Hub(settings)

    @api.route(PAGE_PATH, "GET", summary="The live dashboard (a page for a browser)",
               tags=("dashboard",), auth=False, standard=(), responses={200: "text/html"})
    async def dashboard_page(request: Request) -> Response:
        return HTMLResponse(render(), headers={"Cache-Control": "no-store",
                                               "Content-Security-Policy": CSP,
                                               "Referrer-Policy": "no-referrer"})

    @api.route(VIEW_PATH, "GET", summary="What the dashboard shows, as JSON (read at most "
               "once a second, shared by every viewer)", tags=("dashboard",),
               standard=("401",), responses={200: ("the view", {"type": "object"})})
    async def dashboard_view(request: Request) -> Response:
        return json_response(await hub.current(), headers={"Cache-Control": "no-store"})

    @api.route(REPLAY_PATH, "POST", summary="Replay one dead job as a new first attempt",
               tags=("dashboard",), body=REPLAY, responses={
                   200: ("replayed", {"type": "object", "required": ["replayed"],
                                      "properties": {"replayed": {"type": "array"}}}),
                   404: ("not in the dead-letter queue", {"$ref": "#/components/schemas/Error"})})
    async def dashboard_replay(request: Request) -> Response:
        # JSON only, declared: a cross-site form or a typeless fetch cannot send
        # that without the browser asking first (CORS), and this service never agrees.
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise ApiError(415, "unsupported_media_type", "send application/json")
        body = require_object(await read_json(request, 4096))
        extra = sorted(set(body) - {"job_id"})
        if extra:
            raise invalid(extra[0], "unknown field; send {\"job_id\": \"…\"}")
        job_id = body.get("job_id")
        if not isinstance(job_id, str) or not 0 < len(job_id) <= 128:
            raise invalid("job_id", "required, a job id of 1-128 characters")
        try:
            done = await hub.replay(job_id)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except (BrokerError, StoreError) as exc:
            raise ApiError(503, "unavailable", f"replay failed: {exc}",
                           headers={"Retry-After": RETRY_AFTER_S}) from None
        return json_response({"replayed": done})

    return hub
