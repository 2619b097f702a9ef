"""What the ski routes share: the Ski Data API 2.0 schemas, parameter checks, error bodies.

The published (2.0) shapes are kept as published; liftline adds only what a
client of that spec may ignore: the bounds its keys need on ids (declared, so
the OpenAPI document says what the server refuses), a ticket header and an
extra field or two in answers. Invalid input is a 400 with ``{"message"}``, as
the Ski Data API's clients expect (the generic ``/v1`` routes answer 422 with
``{"error", "message", "field"}``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from liftline.ingest.fast import Answer
from liftline.ingest.openapi import READ_PARAMS, path_param, query
from liftline.ingest.schemas import TICKET_REF, int_range_pattern
from liftline.ingest.validation import ApiError, bounded_int, invalid
from liftline.tickets import Ticket

# -- ids: the published types, with the bounds the server applies --------------
RESORT = {"type": "integer", "format": "int32", "minimum": 1, "maximum": 1000,
          "description": "ID of the resort"}
SEASON = {"type": "string", "pattern": "^[1-9][0-9]{3}$", "example": "2025",
          "description": "ID of the season: a year, 1000-9999"}
SEASON_INT = {"type": "integer", "format": "int32", "minimum": 1000, "maximum": 9999,
              "description": "ID of the season: a year"}
DAY = {"type": "string", "pattern": f"^{int_range_pattern(1, 366)}$", "example": "1",
       "description": "ID of the day, 1-366"}
DAY_INT = {"type": "integer", "format": "int32", "minimum": 1, "maximum": 366,
           "description": "ID of the day, 1-366"}
SKIER = {"type": "integer", "format": "int32", "minimum": 1, "maximum": 10_000_000,
         "description": "ID of the skier"}
MAX_FILTER = 100  # resort / season values per vertical request

# -- the published schemas (2.0; LiftRide's waitTime from 1.16) ----------------
RESPONSE_MSG = {"type": "object", "required": ["message"],
                "properties": {"message": {"type": "string"}}}
LIFT_RIDE = {"type": "object", "required": ["time", "liftID"], "properties": {
    "time": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 1440,
             "example": 217, "description": "minute of the day"},
    "liftID": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 100,
               "example": 21},
    "waitTime": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 1440,
                 "example": 3, "description": "minutes waited (optional; kept)"}}}
SEASON_BODY = {"type": "object", "required": ["year"],
               "properties": {"year": {**SEASON, "description": "the season's year"}}}
SEASONS_LIST = {"type": "object", "required": ["seasons"],
                "properties": {"seasons": {"type": "array", "items": {"type": "string"}}}}
RESORT_ITEM = {"type": "object", "required": ["resortName", "resortID"], "properties": {
    "resortName": {"type": "string"}, "resortID": {"type": "integer", "format": "int32"}}}
RESORTS_LIST = {"type": "object", "required": ["resorts"],
                "properties": {"resorts": {"type": "array", "items": RESORT_ITEM}}}
RESORT_SKIERS = {"type": "object", "required": ["time", "numSkiers"], "properties": {
    "time": {"type": "string", "description": "the resort's name (as published)"},
    "numSkiers": {"type": "integer", "format": "int32"}}}
SKIER_VERTICAL = {"type": "object", "required": ["resorts"], "properties": {"resorts": {
    "type": "array", "items": {"type": "object", "required": ["seasonID", "totalVert"],
                               "properties": {
                                   "seasonID": {"type": "string"},
                                   "totalVert": {"type": "integer", "format": "int32"},
                                   "resortID": {"type": "integer", "format": "int32",
                                                "description": "liftline: which resort"}}}}}}
API_STATS = {"type": "object", "required": ["endpointStats"], "properties": {"endpointStats": {
    "type": "array", "items": {"type": "object", "required": ["URL", "operation", "mean", "max"],
                               "properties": {
                                   "URL": {"type": "string"}, "operation": {"type": "string"},
                                   "mean": {"type": "integer", "format": "int32",
                                            "description": "mean latency, ms"},
                                   "max": {"type": "integer", "format": "int32",
                                           "description": "largest latency, ms"},
                                   "count": {"type": "integer",
                                             "description": "liftline: requests counted"}}}}}}
VERTICAL = {"type": "integer", "format": "int32", "example": 34507}

# -- liftline's extras ---------------------------------------------------------
TICKET_HEADER = "Liftline-Ticket"
TICKET_HEADERS = {TICKET_HEADER: {
    "required": True, "schema": TICKET_REF,
    "description": "the ticket of the request's last write: pass it as `after` to read "
                   "it back"}, "Location": {
    "required": True, "schema": {"type": "string"},
    "description": "where the write shows, with `after` set to its ticket"}}

RIDE_PATH = "/skiers/{resortID}/seasons/{seasonID}/days/{dayID}/skiers/{skierID}"
RIDE_PARAMS = [path_param("resortID", RESORT), path_param("seasonID", SEASON),
               path_param("dayID", DAY), path_param("skierID", SKIER)]
FILTERS = [
    {**query("resort", {"type": "array", "minItems": 1, "maxItems": MAX_FILTER,
                        "items": {"type": "string"}}, "resort to filter by"),
     "required": True, "style": "form", "explode": True},
    {**query("season", {"type": "array", "minItems": 1, "maxItems": MAX_FILTER,
                        "items": {"type": "string"}}, "season to filter by, optional"),
     "style": "form", "explode": True},
]
ERR = {"error": {"$ref": "#/components/schemas/ResponseMsg"}, "invalid_status": "400"}
NOT_FOUND = {"$ref": "#/components/schemas/ResponseMsg"}
SCHEMAS = {"ResponseMsg": RESPONSE_MSG, "LiftRide": LIFT_RIDE, "SeasonsList": SEASONS_LIST,
           "ResortsList": RESORTS_LIST, "ResortSkiers": RESORT_SKIERS,
           "SkierVertical": SKIER_VERTICAL, "APIStats": API_STATS}
READS = READ_PARAMS  # consistency, after, timeout_ms: liftline's, optional


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def int_param(raw: str, field: str, schema: dict[str, Any]) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise invalid(field, f"expected an integer {schema['minimum']}..{schema['maximum']}")
    return bounded_int(int(raw), field, schema["minimum"], schema["maximum"])


def text_param(raw: str, field: str, schema: dict[str, Any]) -> str:
    if re.fullmatch(schema["pattern"].strip("^$"), raw) is None:
        raise invalid(field, schema["description"])
    return raw


def ride_path(p: Mapping[str, str]) -> tuple[int, str, int, int]:
    """The ride path's (resort, season, day, skier) from its path parameters."""
    return (int_param(p["resortID"], "resortID", RESORT),
            text_param(p["seasonID"], "seasonID", SEASON),
            int(text_param(p["dayID"], "dayID", DAY)),
            int_param(p["skierID"], "skierID", SKIER))


def resort_id(text: str) -> int | None:
    """A ``resort`` filter value as a resort id; None for one no resort can have."""
    if text.isascii() and text.isdigit() and len(text) <= 9 \
            and RESORT["minimum"] <= int(text) <= RESORT["maximum"]:
        return int(text)
    return None


def ticket_headers(ticket: Ticket, location: str) -> dict[str, str]:
    sep = "&" if "?" in location else "?"
    return {TICKET_HEADER: str(ticket), "Location": f"{location}{sep}after={ticket}"}


def created(ticket: Ticket, location: str) -> Answer:
    """A raw route's 201 with the ticket headers (no body)."""
    return Answer(201, [(name.lower().encode(), value.encode())
                        for name, value in ticket_headers(ticket, location).items()])


def message(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"message": text}, status_code=status, headers=headers)


def not_found(text: str) -> ApiError:
    return ApiError(404, "not_found", text)


def ski_error(exc: ApiError) -> Response:
    """An error as the Ski Data API answers it: 400 for invalid input, ``{"message"}``."""
    return message(400 if exc.status == 422 else exc.status, exc.message, exc.headers)


def ski_contract(handler: Any) -> Any:
    """A handler whose errors are answered by :func:`ski_error`."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            return ski_error(exc)

    return wrapped
