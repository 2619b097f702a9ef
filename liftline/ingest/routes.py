"""The generic routes: writes, batches, reads, ticket status, health, metrics, schema."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from liftline.ingest.docs import PAGE
from liftline.ingest.openapi import READ_PARAMS, TICKET, Api, path_param
from liftline.ingest.schemas import KEY_REF, write_schemas
from liftline.ingest.service import IngestService
from liftline.ingest.validation import (
    ApiError,
    check_key,
    invalid,
    parse_ticket,
    parse_write,
    read_json,
    read_options,
    require_object,
)
from liftline.reads.base import ReadResult


def _writes(ops: frozenset[str], max_writes: int) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": max_writes, "items": write_schemas(ops)}


TICKETS = {"type": "object", "required": ["tickets"],
           "properties": {"tickets": {"type": "array", "items": TICKET}}}
ACCEPTED = {"type": "object", "required": ["ticket", "status"],
            "properties": {"ticket": TICKET, "status": {"const": "queued"}}}
READ = {"type": "object", "required": ["key", "found"], "properties": {
    "key": {"type": "string"}, "found": {"type": "boolean"}, "value": {},
    "version": {"type": "integer"}, "partition": {"type": "integer"},
    "offset": {"type": "integer"}, "source": {"type": "string"}}}
STATUS = {"type": "object", "required": ["ticket", "status"], "properties": {
    "ticket": TICKET, "status": {"enum": ["queued", "applied", "persisted", "expired"]},
    "applied_seq": {"type": ["integer", "null"]}, "persisted_seq": {"type": "integer"}}}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    body = _ENCODER.encode(data)
    return Response(body.encode(), status, headers, media_type="application/json")


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray):
        return obj.hex()  # values written as bytes by a Python producer
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


# Built once: json.dumps with any option builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)


def service_of(request: Request) -> IngestService:
    return request.app.state.service  # type: ignore[no-any-return]


def read_response(result: ReadResult) -> Response:
    body = result.to_dict()
    if not result.found:
        return json_response({"error": "not_found", "message": f"key {result.key!r} is absent",
                              "field": None, **body}, 404)
    return json_response(body)


async def _write_list(service: IngestService, items: Any, field: str) -> Response:
    """Many writes, all confirmed (202 with a ticket each, in order) or none acknowledged;
    ``field`` names the array in errors (``writes[3].key``; ``[3].key`` for a bare array)."""
    limit = service.settings.ingest_max_batch_writes
    if not isinstance(items, list) or not items:
        raise invalid(field or "body", "required, a non-empty array of writes")
    if len(items) > limit:
        raise invalid(field or "body", f"at most {limit} writes per request, got {len(items)}")
    writes = [parse_write(item, service.ops, f"{field}[{n}]") for n, item in enumerate(items)]
    tickets = await service.write_many(writes)
    return json_response({"tickets": [str(t) for t in tickets]}, 202)


def register(api: Api, ops: frozenset[str], max_batch_writes: int) -> None:
    """Add the generic routes to ``api``; ``ops``: the write ops the service accepts."""
    writes = _writes(ops, max_batch_writes)

    @api.route("/v1/writes", "POST", summary="One write, or an array of writes; 202 once "
               "RabbitMQ confirmed it (them)", body={"oneOf": [write_schemas(ops), writes]},
               tags=("writes",), responses={
                   202: ("confirmed by RabbitMQ, to be applied; poll the ticket(s)",
                         {"oneOf": [ACCEPTED, TICKETS]})})
    async def post_write(request: Request) -> Response:
        service = service_of(request)
        body = await read_json(request, service.settings.ingest_max_body_bytes)
        if isinstance(body, list):
            return await _write_list(service, body, "")
        op, key, value, arg = parse_write(body, service.ops)
        ticket = await service.write(op, key, value, arg)
        return json_response({"ticket": str(ticket), "status": "queued"}, 202,
                             {"Location": f"/v1/tickets/{ticket}"})

    @api.route("/v1/batch", "POST", summary="Many writes in one request; all confirmed, or 503",
               tags=("writes",),
               body={"type": "object", "required": ["writes"], "additionalProperties": False,
                     "properties": {"writes": writes}},
               responses={202: ("every write confirmed", TICKETS)})
    async def post_batch(request: Request) -> Response:
        service = service_of(request)
        body = require_object(await read_json(request, service.settings.ingest_max_body_bytes))
        extra = sorted(set(body) - {"writes"})
        if extra:
            raise invalid(extra[0], "unknown field; send {\"writes\": [...]}")
        return await _write_list(service, body.get("writes"), "writes")

    @api.route("/v1/keys/{key:path}", "GET", summary="A key's value", tags=("reads",),
               params=[path_param("key", KEY_REF), *READ_PARAMS],
               responses={200: ("the value", READ), 404: ("the key is absent", READ),
                          504: ("`after`: the write was not applied within timeout_ms",
                                {"$ref": "#/components/schemas/Error"})})
    async def get_key(request: Request) -> Response:
        service = service_of(request)
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        key = check_key(request.path_params["key"])
        return read_response(await service.get(key, consistency, after, timeout_ms))

    @api.route("/v1/tickets/{ticket}", "GET", summary="Where a write is: queued, applied, "
               "persisted", tags=("reads",), params=[path_param("ticket", TICKET)],
               responses={200: ("the ticket's status", STATUS)})
    async def get_ticket(request: Request) -> Response:
        service = service_of(request)
        ticket = parse_ticket(request.path_params["ticket"], service.settings.partitions)
        assert ticket is not None
        return json_response(await service.status(ticket))

    @api.route("/healthz", "GET", summary="The process is up", tags=("ops",), auth=False,
               standard=(), responses={200: ("alive", {"type": "object"})})
    async def healthz(request: Request) -> Response:
        return json_response({"ok": True})

    @api.route("/readyz", "GET", summary="Ready for writes: RabbitMQ connected, not blocked",
               tags=("ops",), auth=False, standard=(), responses={
                   200: ("ready", {"type": "object"}),
                   503: ("not ready (broker down or blocked, or starting)", {"type": "object"})})
    async def readyz(request: Request) -> Response:
        service = service_of(request)
        state = service.state()
        ready = state == "connected"
        body = {"ready": ready, "broker": state,
                "producer": service.writer.producer_id if service.writer else None}
        return json_response(body, 200 if ready else 503,
                             None if ready else {"Retry-After": "1"})

    @api.route("/metrics", "GET", summary="Prometheus metrics of this process", tags=("ops",),
               auth=False, standard=(), responses={200: "text/plain; version=0.0.4"})
    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service_of(request).metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    @api.route("/openapi.json", "GET", summary="This document", tags=("ops",), auth=False,
               standard=(), responses={200: ("OpenAPI 3.1", {"type": "object"})})
    async def openapi(request: Request) -> Response:
        return json_response(request.app.state.api.document())

    @api.route("/docs", "GET", summary="This document as a page to read", tags=("ops",),
               auth=False, standard=(), responses={200: "text/html"})
    async def docs(request: Request) -> Response:
        return HTMLResponse(PAGE)


def not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, "no_route", f"no route for {request.method} {request.url.path}"
                    ).response()
