"""The Ski Data API 2.0 on the liftline ingest service, every operation as published.

Writes answer 201 once RabbitMQ confirmed them, with no body (as published) and
liftline's ``Liftline-Ticket`` and ``Location`` headers: the ticket of the
request's last write, and the URL that shows it with ``?after=<ticket>``
(read-your-writes). Every read takes liftline's optional ``consistency``,
``after`` and ``timeout_ms``. liftline's other additions are in
:mod:`examples.skiresort.extras`.
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from examples.skiresort import (
    RESORTS_KEY,
    day_key,
    lift_vertical,
    resort_key,
    resort_name,
    seasons_key,
    skiers_key,
    skiers_keys,
)
from examples.skiresort.api import (
    DAY_INT,
    ERR,
    FILTERS,
    LIFT_RIDE,
    MAX_FILTER,
    NOT_FOUND,
    READS,
    RESORT,
    RIDE_PARAMS,
    RIDE_PATH,
    SCHEMAS,
    SEASON,
    SEASON_BODY,
    SEASON_INT,
    TICKET_HEADERS,
    VERTICAL,
    created,
    int_param,
    not_found,
    ref,
    resort_id,
    ride_path,
    ski_contract,
    ski_error,
    text_param,
    ticket_headers,
)
from liftline.ingest.fast import Answer, Call
from liftline.ingest.openapi import Api, path_param
from liftline.ingest.routes import json_response, service_of
from liftline.ingest.validation import bounded_int, invalid, read_json, read_options, require_object


async def skier_day(request: Request) -> tuple[tuple[int, str, int, int], Any]:
    """The ride path's ids and the skier's day record, read as the request asks; 404
    when the skier has no ride that day."""
    service = service_of(request)
    resort, season, day, skier = ride_path(request.path_params)
    consistency, after, timeout_ms = read_options(request, service.settings.partitions)
    result = await service.get(day_key(resort, season, day, skier), consistency, after,
                               timeout_ms)
    if not result.found:
        raise not_found(f"skier {skier} has no ride on day {day} of season {season}")
    return (resort, season, day, skier), result.value


def register(api: Api) -> None:
    """Add the 2.0 operations (with their published operationIds and tags) to ``api``."""
    api.schemas.update(SCHEMAS)
    route = functools.partial(api.route, **ERR)
    _skiers(route)
    _resorts(route)

    @route("/statistics", "GET", summary="get the API performance stats", tags=("statistics",),
           operation_id="getPerformanceStats", responses={200: (
               "per route over every ingest process: mean and largest latency in ms",
               ref("APIStats"))})
    @ski_contract
    async def get_statistics(request: Request) -> Response:
        stats = service_of(request).stats
        rows = [] if stats is None else await stats.read()
        return json_response({"endpointStats": [
            {"URL": r.route, "operation": r.method, "mean": round(r.mean_ms),
             "max": round(r.max_ms), "count": r.count} for r in rows if r.count]})


def _skiers(route: functools.partial) -> None:  # type: ignore[type-arg]
    @route(RIDE_PATH, "POST", summary="write a new lift ride for the skier", tags=("skiers",),
           operation_id="writeNewLiftRide", params=RIDE_PARAMS, body=ref("LiftRide"),
           headers={201: TICKET_HEADERS},
           responses={201: "Write successful (once RabbitMQ confirmed it)",
                      404: ("Data not found", NOT_FOUND)},
           raw=True, errors=ski_error)  # the hot route: no Starlette layers
    async def post_lift_ride(call: Call) -> Answer:
        resort, season, day, skier = ride_path(call.params)
        body = require_object(call.body)
        limits = LIFT_RIDE["properties"]
        time = bounded_int(body.get("time"), "time", 1, limits["time"]["maximum"])
        lift = bounded_int(body.get("liftID"), "liftID", 1, limits["liftID"]["maximum"])
        wait = None
        if "waitTime" in body:
            wait = bounded_int(body["waitTime"], "waitTime", 0, limits["waitTime"]["maximum"])
        vertical = lift_vertical(lift)
        ride = {"vertical": vertical, "time": time, "liftID": lift, "waitTime": wait}
        tickets = await call.service.write_many([
            ("lift_ride", day_key(resort, season, day, skier), ride, None),
            ("add_vertical", seasons_key(resort, skier),
             {"season": season, "vertical": vertical}, None),
            ("add_member", skiers_key(resort, season, day, skier), skier, None),
        ])
        # All three share a partition and a batch: the last ticket covers the ride.
        return created(tickets[-1], f"/skiers/{resort}/seasons/{season}/days/{day}/skiers/"
                                    f"{skier}")

    @route(RIDE_PATH, "GET", summary="get ski day vertical for a skier", tags=("skiers",),
           operation_id="getSkierDayVertical", params=[*RIDE_PARAMS, *READS],
           responses={200: ("total vertical for the day", VERTICAL),
                      404: ("Data not found", NOT_FOUND),
                      504: ("`after` not applied in time", NOT_FOUND)})
    @ski_contract
    async def get_skier_day(request: Request) -> Response:
        _, value = await skier_day(request)
        return json_response(value["vertical"])

    @route("/skiers/{skierID}/vertical", "GET", summary="get the total vertical for the skier "
           "for specified seasons at the specified resort", tags=("skiers",),
           operation_id="getSkierResortTotals",
           params=[path_param("skierID", RIDE_PARAMS[3]["schema"]), *FILTERS, *READS],
           responses={200: ("the skier's vertical per season (and resort)", ref("SkierVertical")),
                      404: ("Data not found", NOT_FOUND),
                      504: ("`after` not applied in time", NOT_FOUND)})
    @ski_contract
    async def get_vertical(request: Request) -> Response:
        service = service_of(request)
        skier = int_param(request.path_params["skierID"], "skierID", RIDE_PARAMS[3]["schema"])
        resorts_asked = request.query_params.getlist("resort")
        seasons_asked = request.query_params.getlist("season")
        if not resorts_asked:
            raise invalid("resort", "required: one resort or more (resort=3&resort=4)")
        for name, given in (("resort", resorts_asked), ("season", seasons_asked)):
            if len(given) > MAX_FILTER:
                raise invalid(name, f"at most {MAX_FILTER} values")
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        resorts = list(dict.fromkeys(r for r in map(resort_id, resorts_asked) if r is not None))
        keys = {r: seasons_key(r, skier) for r in resorts}
        results = await service.get_many(list(keys.values()), consistency, after, timeout_ms) \
            if keys else {}
        rows = []
        for r, key in keys.items():
            totals = results[key].value if results[key].found else {}
            rows += [{"seasonID": s, "totalVert": v, "resortID": r}
                     for s, v in sorted(totals.items()) if not seasons_asked or s in seasons_asked]
        if not rows:
            raise not_found(f"skier {skier} has no rides at resort(s) {resorts_asked[:5]}"
                            + (f" in season(s) {seasons_asked[:5]}" if seasons_asked else ""))
        return json_response({"resorts": rows})


def _resorts(route: functools.partial) -> None:  # type: ignore[type-arg]
    @route("/resorts", "GET", summary="get a list of ski resorts in the database",
           tags=("resorts",), operation_id="getResorts", params=READS,
           responses={200: ("the resorts: registered by a season or a name",
                            ref("ResortsList")),
                      504: ("`after` not applied in time", NOT_FOUND)})
    @ski_contract
    async def get_resorts(request: Request) -> Response:
        service = service_of(request)
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        listed = await service.get(RESORTS_KEY, consistency, after, timeout_ms)
        ids = listed.value if listed.found else []
        records = await service.get_many([resort_key(r) for r in ids], consistency) if ids else {}
        return json_response({"resorts": [
            {"resortName": resort_name(r, records[resort_key(r)].value), "resortID": r}
            for r in ids]})

    @route("/resorts/{resortID}/seasons", "GET", summary="get a list of seasons for the "
           "specified resort", tags=("resorts",), operation_id="getResortSeasons",
           params=[path_param("resortID", RESORT), *READS],
           responses={200: ("the resort's seasons", ref("SeasonsList")),
                      404: ("Resort not found", NOT_FOUND),
                      504: ("`after` not applied in time", NOT_FOUND)})
    @ski_contract
    async def get_seasons(request: Request) -> Response:
        service = service_of(request)
        resort = int_param(request.path_params["resortID"], "resortID", RESORT)
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        result = await service.get(resort_key(resort), consistency, after, timeout_ms)
        if not result.found:
            raise not_found(f"resort {resort} not found (it has no season nor name)")
        return json_response({"seasons": result.value["seasons"]})

    @route("/resorts/{resortID}/seasons", "POST", summary="Add a new season for a resort",
           tags=("resorts",), operation_id="addSeason", params=[path_param("resortID", RESORT)],
           body=SEASON_BODY, headers={201: TICKET_HEADERS},
           responses={201: "new season created (once RabbitMQ confirmed it); the resort is "
                           "registered with it", 404: ("Resort not found", NOT_FOUND)})
    @ski_contract
    async def post_season(request: Request) -> Response:
        service = service_of(request)
        resort = int_param(request.path_params["resortID"], "resortID", RESORT)
        body = require_object(await read_json(request, service.settings.ingest_max_body_bytes))
        year = body.get("year")
        if not isinstance(year, str):
            raise invalid("year", "required, a year as a string, e.g. \"2025\"")
        text_param(year, "year", SEASON)
        tickets = await service.write_many([
            ("add_member", RESORTS_KEY, resort, None),
            ("resort", resort_key(resort), {"season": year}, None),
        ])
        return Response(status_code=201,
                        headers=ticket_headers(tickets[-1], f"/resorts/{resort}/seasons"))

    @route("/resorts/{resortID}/seasons/{seasonID}/day/{dayID}/skiers", "GET",
           summary="get number of unique skiers at resort/season/day", tags=("resorts",),
           operation_id="getResortSkiersDay",
           params=[path_param("resortID", RESORT), path_param("seasonID", SEASON_INT),
                   path_param("dayID", DAY_INT), *READS],
           responses={200: ("the resort's name (as `time`) and the day's distinct skiers",
                            ref("ResortSkiers")),
                      404: ("Resort not found (no season, no name and no skier that day)",
                            NOT_FOUND),
                      504: ("`after` not applied in time", NOT_FOUND)})
    @ski_contract
    async def get_day_skiers(request: Request) -> Response:
        service = service_of(request)
        p = request.path_params
        resort = int_param(p["resortID"], "resortID", RESORT)
        season = str(int_param(p["seasonID"], "seasonID", SEASON_INT))
        day = int_param(p["dayID"], "dayID", DAY_INT)
        consistency, after, timeout_ms = read_options(request, service.settings.partitions)
        keys = skiers_keys(resort, season, day)
        results = await service.get_many([*keys, resort_key(resort)], consistency, after,
                                         timeout_ms)
        count = sum(len(results[k].value) for k in keys if results[k].found)
        record = results[resort_key(resort)]
        if count == 0 and not record.found:
            raise not_found(f"resort {resort} not found")
        return json_response({"time": resort_name(resort, record.value), "numSkiers": count})
