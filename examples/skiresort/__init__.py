"""A ski resort on liftline: lift gates post rides, skiers read their vertical.

Run it: ``liftline up --app examples.skiresort:app`` (workers load the reducers,
the ingest service adds the Ski Data API routes of :mod:`examples.skiresort.routes`).

Each lift ride is three writes to three keys that share the partition tag
``{<resort>.<skier % 16>}`` (see ``partition_for``), so one batch, one confirm
and one apply carry the whole ride:

- ``ski:{tag}:<season>:<day>:skier:<skier>``: ``lift_ride`` → rides and vertical
  of that skier that day;
- ``ski:{tag}:skier:<skier>:seasons``: ``add_vertical`` → vertical per season;
- ``ski:{tag}:<season>:<day>:skiers``: ``add_member`` → the skiers of that bucket
  seen that day; 16 buckets per resort, so no value grows past the 64 KiB limit
  and the resort's rides spread over the partitions.

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


RESORTS_KEY = "ski:resorts"


def resort_seasons_key(resort: int) -> str:
    return f"ski:{resort}:seasons"


@app.reducer("lift_ride")
def lift_ride(current: Any, value: Any) -> dict[str, int]:
    """One more ride and its vertical, for a skier's day."""
    current = current or {"rides": 0, "vertical": 0}
    return {"rides": current["rides"] + 1, "vertical": current["vertical"] + value["vertical"]}


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


def ingest_routes(api: Any, service: Any) -> None:
    """Hook of the ingest service: add the Ski Data API routes."""
    from examples.skiresort.routes import register

    register(api)
