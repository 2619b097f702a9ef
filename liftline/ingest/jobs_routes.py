"""``POST /v1/jobs`` and ``GET /v1/jobs/{id}``: background jobs over HTTP.

The job client is synchronous (pika's BlockingConnection behind a lock); it runs
in the default executor so the event loop never waits on a confirm.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from liftline.app import App, JobSpec
from liftline.errors import InvalidWrite, LiftlineError
from liftline.ingest.openapi import Api, path_param
from liftline.ingest.routes import json_response, service_of
from liftline.ingest.schemas import KEY_REF, VALUE_REF, numbers_allowed
from liftline.ingest.service import unavailable
from liftline.ingest.validation import ApiError, check_key, invalid, read_json, require_object

JOB_ID = {"type": "string", "minLength": 1, "maxLength": 128}
NAME = {"type": "string", "minLength": 1, "maxLength": 64}


def job_schema(app: App | None) -> dict[str, Any]:
    """A job request: any name without an App; with one, each job's name and the
    keyword arguments its handler takes (the ones without a default required)."""
    common = {"key": {"anyOf": [KEY_REF, {"type": "null"}],
                      "description": "run after every earlier job with this key"},
              "job_id": {"anyOf": [JOB_ID, {"type": "null"}], "description": "idempotency id"}}
    if app is None:
        return {"type": "object", "required": ["name"], "additionalProperties": False,
                "properties": {"name": NAME, "args": {
                    "type": "object", "additionalProperties": VALUE_REF,
                    "description": "the handler's keyword arguments"}, **common}}
    return {"oneOf": [_one_job(spec, common) for _name, spec in sorted(app.jobs.items())]}


def _one_job(spec: JobSpec, common: dict[str, Any]) -> dict[str, Any]:
    params = list(spec.signature.parameters.values())[1:]  # the first one is the context
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    args: dict[str, Any] = {
        "type": "object", "properties": {p.name: VALUE_REF for p in named},
        "required": [p.name for p in named if p.default is p.empty],
        "additionalProperties": VALUE_REF if any(p.kind == p.VAR_KEYWORD for p in params)
        else False}
    body: dict[str, Any] = {"type": "object", "title": spec.name, "required": ["name"],
                            "additionalProperties": False,
                            "properties": {"name": {"const": spec.name}, "args": args, **common}}
    if args["required"]:
        body["required"] = ["name", "args"]
    return body


JOB_FIELDS = frozenset({"name", "args", "key", "job_id"})


def register(api: Api, app: App | None) -> None:
    """The job routes; ``POST /v1/jobs`` only where a job can be enqueued (no App, which
    leaves names to the workers, or an App that has jobs)."""
    if app is None or app.jobs:
        _register_post(api, app)
    _register_get(api)


def _register_post(api: Api, app: App | None) -> None:
    @api.route("/v1/jobs", "POST", summary="Enqueue a background job; 202 once confirmed",
               body=job_schema(app), tags=("jobs",), responses={202: ("confirmed by RabbitMQ", {
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
        if not numbers_allowed(args):
            raise invalid("args", "numbers must lie in -2^63..2^64 (excluded)")
        key, job_id = body.get("key"), body.get("job_id")
        if key is not None:
            check_key(key)
        if job_id is not None and not (isinstance(job_id, str) and 0 < len(job_id) <= 128):
            raise invalid("job_id", "a string of 1-128 characters")
        if len(name) > 64:
            raise invalid("name", "at most 64 characters")
        try:
            handle = (await asyncio.to_thread(
                service.jobs().enqueue_many, [(name, args, key, job_id)]))[0]
        except InvalidWrite as exc:
            unknown = service.app is not None and name not in service.app.jobs
            raise invalid("name" if unknown else "args", str(exc)) from exc
        except LiftlineError as exc:
            raise unavailable(exc, "job not confirmed") from exc
        return json_response({"job_id": handle.id, "created": handle.created}, 202,
                             {"Location": f"/v1/jobs/{urllib.parse.quote(handle.id, safe='')}"})


def _register_get(api: Api) -> None:
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
