"""The Ski Data API routes, on the liftline ingest service.

Writes answer 201 (rides; 202 for seasons) once RabbitMQ confirmed them, with the ticket of the
skier-day write; pass it as ``?after=<ticket>`` to read your own ride back.
Reads take ``consistency=primary|stale``, ``after`` and ``timeout_ms`` like
``/v1/keys``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from examples.skiresort import (
    RESORTS_KEY,
    day_key,
    lift_vertical,
    resort_seasons_key,
    seasons_key,
    skiers_key,
    skiers_keys,
)
from liftline.ingest.openapi import READ_PARAMS, TICKET, Api, path_param, query
from liftline.ingest.routes import json_response, service_of
from liftline.ingest.validation import (
    ApiError,
    bounded_int,
    invalid,
    read_json,
    read_options,
    require_object,
)

RESORT = {"type": "integer", "minimum": 1, "maximum": 1000}
SEASON = {"type": "string", "pattern": "^[0-9]{4}$", "example": "2025"}
DAY = {"type": "integer", "minimum": 1, "maximum": 366}
SKIER = {"type": "integer", "minimum": 1, "maximum": 10_000_000}
LIFT_RIDE = {"type": "object", "required": ["time", "liftID"], "additionalProperties": False,
             "properties": {"time": {"type": "integer", "minimum": 1, "maximum": 1440,
                                     "description": "minute of the day"},
                            "liftID": {"type": "integer", "minimum": 1, "maximum": 100}}}
ACCEPTED = {"type": "object", "required": ["ticket", "tickets"], "properties": {
    "ticket": TICKET, "tickets": {"type": "array", "items": TICKET}}}
RIDE_PATH = "/skiers/{resortID}/seasons/{seasonID}/days/{dayID}/skiers/{skierID}"
RIDE_PARAMS = [path_param("resortID", RESORT), path_param("seasonID", SEASON),
               path_param("dayID", DAY), path_param("skierID", SKIER)]
TAGS = ("ski resort",)


def _int_param(raw: str, field: str, schema: dict[str, Any]) -> int:
    if not raw.isdigit() or len(raw) > 9:
        raise invalid(field, f"expected an integer {schema['minimum']}..{schema['maximum']}")
    return bounded_int(int(raw), field, schema["minimum"], schema["maximum"])


def _season(raw: str, field: str = "seasonID") -> str:
    if len(raw) != 4 or not raw.isdigit():
        raise invalid(field, "expected a four-digit year, e.g. 2025")
    return raw


def _ride_path(request: Request) -> tuple[int, str, int, int]:
    p = request.path_params
    return (_int_param(p["resortID"], "resortID", RESORT), _season(p["seasonID"]),
            _int_param(p["dayID"], "dayID", DAY), _int_param(p["skierID"], "skierID", SKIER))


def _ski_contract(handler: Any) -> Any:
    """The Ski Data API answers invalid input with 400 (its load clients expect it)."""
    import functools

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.status == 422:
                exc.status = 400
            raise

    return wrapped


def register(api: Api) -> None:
    import functools

    route = functools.partial(api.route, invalid_status="400")

    @route(RIDE_PATH, "POST", summary="A lift ride: 201 once RabbitMQ confirmed it",
               params=RIDE_PARAMS, body=LIFT_RIDE, tags=TAGS,
               responses={201: ("the ride's three writes are confirmed", ACCEPTED)})
    @_ski_contract
    async def post_lift_ride(request: Request) -> Response:
        service = service_of(request)
        resort, season, day, skier = _ride_path(request)
        body = require_object(await read_json(request, service.settings.ingest_max_body_bytes))
        extra = sorted(set(body) - {"time", "liftID"})
        if extra:
            raise invalid(extra[0], "unknown field; a lift ride has time and liftID")
        bounded_int(body.get("time"), "time", 1, 1440)
        lift = bounded_int(body.get("liftID"), "liftID", 1, 100)
        vertical = lift_vertical(lift)
        tickets = await service.write_many([
            ("lift_ride", day_key(resort, season, day, skier), {"vertical": vertical}, None),
            ("add_vertical", seasons_key(resort, skier),
             {"season": season, "vertical": vertical}, None),
            ("add_member", skiers_key(resort, season, day, skier), skier, None),
        ])
        return json_response({"ticket": str(tickets[0]), "tickets": [str(t) for t in tickets]},
                             201)

    @route(RIDE_PATH, "GET", summary="A skier's rides and vertical that day",
               params=[*RIDE_PARAMS, *READ_PARAMS], tags=TAGS, responses={
                   200: ("rides and vertical", {"type": "object"}),
                   404: ("no ride that day", {"$ref": "#/components/schemas/Error"}),
                   504: ("`after` not applied in time", {"$ref": "#/components/schemas/Error"})})
    @_ski_contract
    async def get_skier_day(request: Request) -> Response:
        service = service_of(request)
        resort, season, day, skier = _ride_path(request)
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        result = await service.get(day_key(resort, season, day, skier), consistency, after,
                                   timeout_ms)
        if not result.found:
            raise ApiError(404, "not_found", f"skier {skier} has no ride on day {day}")
        return json_response({"skierID": skier, "dayID": day, "seasonID": season,
                              "resortID": resort, **result.value})

    @route("/skiers/{skierID}/vertical", "GET", summary="A skier's vertical per season",
               tags=TAGS, params=[
                   path_param("skierID", SKIER),
                   {**query("resort", RESORT, "the resort"), "required": True},
                   query("season", SEASON, "only this season"), READ_PARAMS[0]],
               responses={200: ("vertical per season", {"type": "object"}),
                          404: ("no rides", {"$ref": "#/components/schemas/Error"})})
    @_ski_contract
    async def get_vertical(request: Request) -> Response:
        service = service_of(request)
        skier = _int_param(request.path_params["skierID"], "skierID", SKIER)
        resort = _int_param(request.query_params.get("resort", ""), "resort", RESORT)
        season = request.query_params.get("season")
        if season is not None:
            _season(season, "season")
        consistency, _after, _ = read_options(request, service.settings.partitions)
        result = await service.get(seasons_key(resort, skier), consistency)
        totals = result.value if result.found else {}
        rows = [{"seasonID": s, "totalVert": v} for s, v in sorted(totals.items())
                if season is None or s == season]
        if not rows:
            raise ApiError(404, "not_found", f"skier {skier} has no rides at resort {resort}")
        return json_response({"resorts": rows})

    @route("/resorts/{resortID}/seasons/{seasonID}/day/{dayID}/skiers", "GET",
               summary="Distinct skiers at a resort that day", tags=TAGS,
               params=[path_param("resortID", RESORT), path_param("seasonID", SEASON),
                       path_param("dayID", DAY), READ_PARAMS[0]],
               responses={200: ("the count", {"type": "object"})})
    @_ski_contract
    async def get_day_skiers(request: Request) -> Response:
        service = service_of(request)
        p = request.path_params
        resort = _int_param(p["resortID"], "resortID", RESORT)
        season = _season(p["seasonID"])
        day = _int_param(p["dayID"], "dayID", DAY)
        consistency, _after, _ = read_options(request, service.settings.partitions)
        results = await service.get_many(skiers_keys(resort, season, day), consistency)
        count = sum(len(r.value) for r in results.values() if r.found)
        return json_response({"resortID": resort, "seasonID": season, "dayID": day,
                              "numSkiers": count})

    @route("/resorts/{resortID}/seasons", "POST", summary="Add a season to a resort",
               tags=TAGS, params=[path_param("resortID", RESORT)],
               body={"type": "object", "required": ["year"], "additionalProperties": False,
                     "properties": {"year": SEASON}},
               responses={202: ("confirmed", ACCEPTED)})
    @_ski_contract
    async def post_season(request: Request) -> Response:
        service = service_of(request)
        resort = _int_param(request.path_params["resortID"], "resortID", RESORT)
        body = require_object(await read_json(request, service.settings.ingest_max_body_bytes))
        extra = sorted(set(body) - {"year"})
        if extra:
            raise invalid(extra[0], "unknown field; send {\"year\": \"2025\"}")
        year = body.get("year")
        if not isinstance(year, str):
            raise invalid("year", "expected a four-digit year as a string, e.g. \"2025\"")
        _season(year, "year")
        tickets = await service.write_many([
            ("add_member", resort_seasons_key(resort), year, None),
            ("add_member", RESORTS_KEY, resort, None),
        ])
        return json_response({"ticket": str(tickets[0]), "tickets": [str(t) for t in tickets]},
                             202)

    @route("/resorts/{resortID}/seasons", "GET", summary="A resort's seasons", tags=TAGS,
               params=[path_param("resortID", RESORT), *READ_PARAMS],
               responses={200: ("the seasons", {"type": "object"}),
                          504: ("`after` not applied in time",
                                {"$ref": "#/components/schemas/Error"})})
    @_ski_contract
    async def get_seasons(request: Request) -> Response:
        service = service_of(request)
        resort = _int_param(request.path_params["resortID"], "resortID", RESORT)
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        result = await service.get(resort_seasons_key(resort), consistency, after, timeout_ms)
        return json_response({"resortID": resort,
                              "seasons": result.value if result.found else []})

    @route("/resorts", "GET", summary="Resorts that have seasons", tags=TAGS,
               params=[READ_PARAMS[0]], responses={200: ("the resorts", {"type": "object"})})
    @_ski_contract
    async def get_resorts(request: Request) -> Response:
        service = service_of(request)
        consistency, _after, _ = read_options(request, service.settings.partitions)
        result = await service.get(RESORTS_KEY, consistency)
        return json_response({"resorts": [{"resortID": r}
                                          for r in (result.value if result.found else [])]})
