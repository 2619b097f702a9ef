"""A ski resort on liftline: lift gates post rides, skiers read their vertical.

Run it: ``liftline up --app examples.skiresort:app`` (workers load the reducers,
the ingest service adds the Ski Data API 2.0 routes of :mod:`examples.skiresort.routes`
and liftline's extras of :mod:`examples.skiresort.extras`). The load client is
``python -m examples.skiresort.client``.

Each lift ride is three writes to three keys that share the partition tag
``{<resort>.<skier % 16>}`` (see ``partition_for``), so one batch, one confirm
and one apply carry the whole ride:

- ``ski:{tag}:<season>:<day>:skier:<skier>``: ``lift_ride`` → rides, vertical,
  wait time and the rides themselves (the newest 1000) of that skier that day;
- ``ski:{tag}:skier:<skier>:seasons``: ``add_vertical`` → vertical per season;
- ``ski:{tag}:<season>:<day>:skiers``: ``add_member`` → the skiers of that bucket
  seen that day; 16 buckets per resort, so no value grows past the 64 KiB limit
  and the resort's rides spread over the partitions.

The resort registry (names and seasons) is one key per resort plus the list of
resorts, all under the tag ``{resorts}``: a season's two writes share a batch.
A resort is registered by its first season or its name; unnamed, it is called
``Resort <id>``.

A lift's vertical is ``lift_id * 10`` metres.
"""

from __future__ import annotations

import bisect
from typing import Any

import liftline
from liftline.errors import InvalidWrite

app = liftline.App("skiresort")

SKIER_BUCKETS = 16


def lift_vertical(lift_id: int) -> int:
    return lift_id * 10


def _tag(resort: int, skier: int) -> str:
    """The partition tag of a skier's keys: the resort and the skier's bucket."""
    return f"{{{resort}.{skier % SKIER_BUCKETS}}}"


def day_key(resort: int, season: str, day: int, skier: int) -> str:
    return f"ski:{_tag(resort, skier)}:{season}:{day}:skier:{skier}"


def seasons_key(resort: int, skier: int) -> str:
    return f"ski:{_tag(resort, skier)}:skier:{skier}:seasons"


def skiers_keys(resort: int, season: str, day: int) -> list[str]:
    return [skiers_key(resort, season, day, b) for b in range(SKIER_BUCKETS)]


def skiers_key(resort: int, season: str, day: int, skier: int) -> str:
    return f"ski:{_tag(resort, skier)}:{season}:{day}:skiers"


RESORTS_KEY = "ski:{resorts}:list"
RIDES_KEPT = 1000  # rides listed per skier-day (the counts stay exact beyond)


def resort_key(resort: int) -> str:
    return f"ski:{{resorts}}:resort:{resort}"


def resort_name(resort: int, record: Any) -> str:
    """The resort's name, or its default when it was never given one."""
    name = record.get("name") if isinstance(record, dict) else None
    return name if isinstance(name, str) else f"Resort {resort}"


@app.reducer("lift_ride")
def lift_ride(current: Any, value: Any) -> dict[str, Any]:
    """One more ride for a skier's day: its vertical, its wait, the ride itself.

    ``value``: ``{"vertical", "time"?, "liftID"?, "waitTime"?}`` (a ride written
    before waits were kept has vertical only).
    """
    current = current or {}
    wait = value.get("waitTime")
    ride = [value.get("time"), value.get("liftID"), wait]
    kept = [*current.get("liftRides", []), ride][-RIDES_KEPT:]
    return {"rides": current.get("rides", 0) + 1,
            "vertical": current.get("vertical", 0) + value["vertical"],
            "waitTime": current.get("waitTime", 0) + (wait or 0),
            "liftRides": kept}


@app.reducer("add_vertical")
def add_vertical(current: Any, value: Any) -> dict[str, int]:
    """Add ``value["vertical"]`` to the season ``value["season"]`` of a skier's totals."""
    totals = dict(current or {})
    season = value["season"]
    totals[season] = totals.get(season, 0) + value["vertical"]
    return totals


@app.reducer("add_member")
def add_member(current: Any, value: Any) -> list[Any]:
    """A sorted list of distinct members (ints or strings, one kind per key)."""
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise InvalidWrite("add_member takes an int or a string")
    members = list(current or [])
    at = bisect.bisect_left(members, value)
    if at == len(members) or members[at] != value:
        members.insert(at, value)
    return members


@app.reducer("resort")
def resort(current: Any, value: Any) -> dict[str, Any]:
    """A resort's record: ``value`` ``{"name"?}`` names it, ``{"season"?}`` adds a season."""
    record = {"name": None, "seasons": [], **(current or {})}
    if "name" in value:
        record["name"] = value["name"]
    season = value.get("season")
    if season is not None and season not in record["seasons"]:
        record["seasons"] = sorted([*record["seasons"], season])
    return record


def ingest_routes(api: Any, service: Any) -> None:
    """Hook of the ingest service: the Ski Data API 2.0 routes, then liftline's extras."""
    from examples.skiresort import extras, routes

    routes.register(api)
    extras.register(api)
