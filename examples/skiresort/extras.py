"""liftline's routes beside the Ski Data API: the whole day of a skier, and resort names.

- ``GET /skiers/{resortID}/seasons/{seasonID}/days/{dayID}/skiers/{skierID}/rides``:
  rides, vertical, wait time and the rides themselves (the published route
  answers the vertical alone, a bare integer);
- ``PUT /resorts/{resortID}`` ``{"resortName"}``: names a resort (and registers it);
  a resort never named is called ``Resort <id>``.
"""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response

from examples.skiresort import RESORTS_KEY, RIDES_KEPT, resort_key
from examples.skiresort.api import (
    ERR,
    NOT_FOUND,
    READS,
    RESORT,
    RIDE_PARAMS,
    RIDE_PATH,
    TICKET_HEADERS,
    int_param,
    ski_contract,
    ticket_headers,
)
from examples.skiresort.routes import skier_day
from liftline.ingest.openapi import Api, path_param
from liftline.ingest.routes import json_response, service_of
from liftline.ingest.validation import invalid, read_json, require_object

NAME = {"type": "string", "minLength": 1, "maxLength": 100}
RIDE = {"type": "object", "required": ["time", "liftID", "waitTime"], "properties": {
    "time": {"type": ["integer", "null"]}, "liftID": {"type": ["integer", "null"]},
    "waitTime": {"type": ["integer", "null"], "description": "null: not sent"}}}
DAY_VIEW = {"type": "object", "required": [
    "resortID", "seasonID", "dayID", "skierID", "rides", "vertical", "waitTime", "liftRides"],
    "properties": {
        "resortID": {"type": "integer"}, "seasonID": {"type": "string"},
        "dayID": {"type": "integer"}, "skierID": {"type": "integer"},
        "rides": {"type": "integer", "description": "rides that day (all of them)"},
        "vertical": {"type": "integer"},
        "waitTime": {"type": "integer", "description": "minutes waited, summed"},
        "liftRides": {"type": "array", "items": RIDE,
                      "description": f"the rides, oldest first (the newest {RIDES_KEPT})"}}}
TAGS = ("liftline extras",)


def register(api: Api) -> None:
    route = functools.partial(api.route, **ERR)

    @route(RIDE_PATH + "/rides", "GET", summary="A skier's day: rides, vertical, waits and "
           "each ride", tags=TAGS, params=[*RIDE_PARAMS, *READS],
           responses={200: ("the day", DAY_VIEW), 404: ("no ride that day", NOT_FOUND),
                      504: ("`after` not applied in time", NOT_FOUND)})
    @ski_contract
    async def get_skier_day_rides(request: Request) -> Response:
        (resort, season, day, skier), value = await skier_day(request)
        return json_response({
            "resortID": resort, "seasonID": season, "dayID": day, "skierID": skier,
            "rides": value["rides"], "vertical": value["vertical"],
            "waitTime": value.get("waitTime", 0),
            "liftRides": [{"time": t, "liftID": lift, "waitTime": w}
                          for t, lift, w in value.get("liftRides", [])]})

    @route("/resorts/{resortID}", "PUT", summary="Name a resort (registering it)", tags=TAGS,
           params=[path_param("resortID", RESORT)],
           body={"type": "object", "required": ["resortName"],
                 "properties": {"resortName": NAME}},
           headers={200: TICKET_HEADERS},
           responses={200: ("named, once RabbitMQ confirmed it", {
               "type": "object", "required": ["resortID", "resortName"],
               "properties": {"resortID": {"type": "integer"}, "resortName": NAME}})})
    @ski_contract
    async def put_resort(request: Request) -> Response:
        service = service_of(request)
        resort = int_param(request.path_params["resortID"], "resortID", RESORT)
        body = require_object(await read_json(request, service.settings.ingest_max_body_bytes))
        name = body.get("resortName")
        if not isinstance(name, str) or not 0 < len(name) <= NAME["maxLength"]:
            raise invalid("resortName", f"required, 1-{NAME['maxLength']} characters")
        tickets = await service.write_many([
            ("add_member", RESORTS_KEY, resort, None),
            ("resort", resort_key(resort), {"name": name}, None),
        ])
        return json_response({"resortID": resort, "resortName": name}, 200,
                             ticket_headers(tickets[-1], "/resorts"))
