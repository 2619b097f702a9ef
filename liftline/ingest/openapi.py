"""Routes declared once, for Starlette and for the OpenAPI document at /openapi.json.

``api.route(path, method, summary=…, params=…, body=…, responses=…)`` registers
a handler and its description; the generic routes and an app's own routes
(``ingest_routes(api, service)`` in the app's module) use the same registry.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftline.ingest.fast import ErrorAnswer, RawRoute
from liftline.ingest.schemas import TICKET_REF, components

Handler = Callable[[Request], Awaitable[Response]]

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": ["string", "null"], "description": "the offending field, if any"},
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
TICKET = TICKET_REF  # the pattern depends on the cluster's partitions: see schemas.py
_STANDARD = {
    "400": "the body is not JSON",
    "401": "missing or wrong bearer token (when the service has tokens)",
    "413": "the body is larger than ingest_max_body_bytes",
    "415": "the content type is not JSON",
    "422": "a field is missing or wrong; `field` names it",
    "503": "RabbitMQ or Redis unavailable, a resource alarm, or no live owner; see Retry-After",
}


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def path_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


READ_PARAMS = [
    query("consistency", {"type": "string", "enum": ["primary", "stale"], "default": "primary"},
          "primary: the partition owner's memory; stale: the last value flushed to Redis"),
    query("after", TICKET, "wait until this write is applied (read-your-writes); with "
          "consistency=stale, until it is persisted in Redis"),
    query("timeout_ms", {"type": "integer", "minimum": 0, "maximum": 60000, "default": 2000},
          "how long `after` may wait"),
]


class Api:
    """The service's routes and their OpenAPI description."""

    def __init__(self, title: str, version: str, *, partitions: int = 16,
                 tokens: bool = False) -> None:
        """``tokens``: the service checks bearer tokens (then, and only then, the
        document declares them and the 401 answers)."""
        self.title = title
        self.version = version
        self.tokens = tokens
        self.handlers: dict[str, dict[str, Handler]] = {}  # path -> method -> handler
        self.paths: dict[str, dict[str, Any]] = {}
        self.schemas: dict[str, Any] = {"Error": ERROR, **components(partitions)}
        # Paths registered with auth=False: the Gate lets them through without a token.
        self.open_paths: set[str] = set()
        self.raw_routes: list[RawRoute] = []  # answered before Starlette (liftline.ingest.fast)

    def route(self, path: str, method: str, *, summary: str,
              params: Sequence[dict[str, Any]] = (), body: dict[str, Any] | None = None,
              responses: dict[int, Any],
              tags: tuple[str, ...] = (), standard: tuple[str, ...] = ("401", "503"),
              auth: bool = True, invalid_status: str = "422",
              error: dict[str, Any] = ERROR_REF,
              headers: dict[int, dict[str, Any]] | None = None,
              operation_id: str | None = None, raw: bool = False,
              errors: ErrorAnswer | None = None) -> Callable[[Any], Any]:
        """Register ``handler`` for ``method path``; ``responses``: status → (text, schema).

        ``raw``: the handler is a raw route's (``Call`` → ``Answer``, see
        :mod:`liftline.ingest.fast`; its body is JSON), answered ahead of Starlette;
        ``errors`` makes its ApiErrors' answers (default: ``ApiError.response``).

        ``invalid_status`` is the status of a missing or wrong field (422, or 400
        for APIs whose clients expect that); ``error`` the schema of error
        bodies; ``headers``: status → the response headers it declares."""

        def register(handler: Any) -> Any:
            endpoint = handler
            if raw:
                route = RawRoute(path, method, handler, errors)
                self.raw_routes.append(route)
                endpoint = route.endpoint()
            self.handlers.setdefault(path, {})[method.upper()] = endpoint
            operation: dict[str, Any] = {
                "summary": summary, "operationId": operation_id or handler.__name__,
                "parameters": list(params), "responses": {}, "tags": list(tags),
            }
            if not auth:
                self.open_paths.add(path)
                if self.tokens:
                    operation["security"] = []
            if body is not None:
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": body}}}
            for status, answer in responses.items():
                text, schema = answer if isinstance(answer, tuple) else (answer, None)
                entry: dict[str, Any] = {"description": text}
                if schema is not None:
                    entry["content"] = {"application/json": {"schema": schema}}
                if headers and status in headers:
                    entry["headers"] = headers[status]
                operation["responses"][str(status)] = entry
            wanted = list(standard) + (["400", "413", "415", invalid_status]
                                       if body is not None else [])
            if any(p["in"] == "query" or p["in"] == "path" for p in params):
                wanted.append(invalid_status)
            for code in wanted:
                if code == "401" and not (auth and self.tokens):
                    continue
                operation["responses"].setdefault(code, {
                    "description": _STANDARD["422" if code == invalid_status else code],
                    "content": {"application/json": {"schema": error}},
                })
            self.paths.setdefault(_openapi_path(path), {})[method.lower()] = operation
            return handler

        return register

    @property
    def routes(self) -> list[Route]:
        """One Starlette route per path (in the order paths were first registered), so a
        method the path does not take is a 405 whose ``Allow`` lists every one it does."""
        return [_route(path, by_method) for path, by_method in self.handlers.items()]

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version,
                     "description": "liftline HTTP ingest: keyed writes acknowledged once "
                                    "RabbitMQ confirmed them (202 + ticket), reads at three "
                                    "consistency levels, ticket status."},
            "paths": self.paths,
            "components": {"schemas": self.schemas},
        }
        if self.tokens:
            doc["components"]["securitySchemes"] = {"bearer": {"type": "http",
                                                               "scheme": "bearer"}}
            doc["security"] = [{"bearer": []}]
        return doc


def _openapi_path(path: str) -> str:
    """Starlette's ``{name:int}`` converters become plain ``{name}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _route(path: str, by_method: dict[str, Handler]) -> Route:
    if len(by_method) == 1:
        ((method, handler),) = by_method.items()
        return Route(path, handler, methods=[method])

    async def dispatch(request: Request) -> Response:
        handler = by_method.get(request.method)
        if handler is None:  # HEAD, which Starlette lets through for GET
            handler = by_method["GET"]
        return await handler(request)

    dispatch.__name__ = "_".join(h.__name__ for h in by_method.values())
    return Route(path, dispatch, methods=list(by_method))
