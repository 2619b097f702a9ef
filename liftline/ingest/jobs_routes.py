"""``POST /v1/jobs`` and ``GET /v1/jobs/{id}``: background jobs over HTTP.

The job client is synchronous (pika's BlockingConnection behind a lock); it runs
in the default executor so the event loop never waits on a confirm.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from liftline.errors import InvalidWrite, LiftlineError
from liftline.ingest.openapi import Api, path_param
from liftline.ingest.routes import json_response, service_of
from liftline.ingest.service import unavailable
from liftline.ingest.validation import ApiError, invalid, read_json, require_object

JOB = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 64},
    "args": {"type": "object", "description": "the handler's keyword arguments"},
    "key": {"type": "string", "description": "run after every earlier job with this key"},
    "job_id": {"type": "string", "maxLength": 128, "description": "idempotency id"}}}
JOB_ID = {"type": "string", "minLength": 1, "maxLength": 128}
JOB_FIELDS = frozenset({"name", "args", "key", "job_id"})


def register(api: Api) -> None:
    @api.route("/v1/jobs", "POST", summary="Enqueue a background job; 202 once confirmed",
               body=JOB, tags=("jobs",), responses={202: ("confirmed by RabbitMQ", {
                   "type": "object", "required": ["job_id", "created"],
                   "properties": {"job_id": JOB_ID, "created": {"type": "boolean"}}})})
    async def post_job(request: Request) -> Response:
        service = service_of(request)
        body = require_object(await read_json(request, service.settings.ingest_max_body_bytes))
        extra = sorted(set(body) - JOB_FIELDS)
        if extra:
            raise invalid(extra[0], "unknown field; a job has name, args, key, job_id")
        name, args = body.get("name"), body.get("args", {})
        if not isinstance(name, str) or not name:
            raise invalid("name", "required, the job's name")
        if not isinstance(args, dict):
            raise invalid("args", "must be an object of keyword arguments")
        for field in ("key", "job_id"):
            if body.get(field) is not None and not isinstance(body[field], str):
                raise invalid(field, "must be a string")
        try:
            handle = (await asyncio.to_thread(
                service.jobs().enqueue_many,
                [(name, args, body.get("key"), body.get("job_id"))]))[0]
        except InvalidWrite as exc:
            raise invalid("args" if "argument" in str(exc) else "name", str(exc)) from exc
        except LiftlineError as exc:
            raise unavailable(exc, "job not confirmed") from exc
        return json_response({"job_id": handle.id, "created": handle.created}, 202,
                             {"Location": f"/v1/jobs/{handle.id}"})

    @api.route("/v1/jobs/{job_id}", "GET", summary="A job's state, and its result once done",
               params=[path_param("job_id", JOB_ID)], tags=("jobs",),
               responses={200: ("the job's record", {"type": "object"}),
                          404: ("unknown or expired", {"$ref": "#/components/schemas/Error"})})
    async def get_job(request: Request) -> Response:
        service = service_of(request)
        job_id = request.path_params["job_id"]
        if not 0 < len(job_id) <= 128:
            raise invalid("job_id", "1-128 characters")
        try:
            record = await asyncio.to_thread(service.jobs().status.get, job_id)
        except LiftlineError as exc:
            raise unavailable(exc, "job status unreadable") from exc
        if record is None:
            raise ApiError(404, "not_found", f"job {job_id} is unknown (or its record expired)")
        return json_response(record)
