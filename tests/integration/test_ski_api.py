"""The Ski Data API 2.0 as published, on real servers: every operation, its statuses and shapes.

The schemas below are the published 2.0 ones (LiftRide with 1.16's waitTime),
written here from the spec and not taken from the service, and every answer is
checked against them with a JSON Schema validator. liftline's extras (the
ticket headers, ``after``, the day view, resort names) are checked beside them.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

import jsonschema_rs
from helpers import wait_until
from http_ingest import Http

SKI = "examples.skiresort:app"
INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
PUBLISHED = {
    "ResponseMsg": {"type": "object", "properties": {"message": {"type": "string"}}},
    "SeasonsList": {"type": "object", "properties": {"seasons": {
        "type": "array", "items": {"type": "string"}}}},
    "ResortsList": {"type": "object", "properties": {"resorts": {"type": "array", "items": {
        "type": "object", "properties": {"resortName": {"type": "string"},
                                         "resortID": INT32}}}}},
    "ResortSkiers": {"type": "object", "properties": {"time": {"type": "string"},
                                                      "numSkiers": INT32}},
    "SkierVertical": {"type": "object", "properties": {"resorts": {"type": "array", "items": {
        "type": "object", "properties": {"seasonID": {"type": "string"}, "totalVert": INT32}}}}},
    "APIStats": {"type": "object", "properties": {"endpointStats": {"type": "array", "items": {
        "type": "object", "properties": {"URL": {"type": "string"},
                                         "operation": {"type": "string"},
                                         "mean": INT32, "max": INT32}}}}},
    "Vertical": INT32,
}
# (method, path) -> the statuses the published spec gives the operation.
OPERATIONS = {
    ("post", "/skiers/{resortID}/seasons/{seasonID}/days/{dayID}/skiers/{skierID}"):
        {"201", "400", "404"},
    ("get", "/skiers/{resortID}/seasons/{seasonID}/days/{dayID}/skiers/{skierID}"):
        {"200", "400", "404"},
    ("get", "/skiers/{skierID}/vertical"): {"200", "400", "404"},
    ("get", "/resorts"): {"200"},
    ("get", "/resorts/{resortID}/seasons"): {"200", "400", "404"},
    ("post", "/resorts/{resortID}/seasons"): {"201", "400", "404"},
    ("get", "/resorts/{resortID}/seasons/{seasonID}/day/{dayID}/skiers"): {"200", "400", "404"},
    ("get", "/statistics"): {"200"},
}
# Everything a published shape requires of an answer, beyond the schema's types.
REQUIRED = {"SeasonsList": ["seasons"], "ResortsList": ["resorts"],
            "ResortSkiers": ["time", "numSkiers"], "SkierVertical": ["resorts"],
            "APIStats": ["endpointStats"], "ResponseMsg": ["message"]}


def conforms(name: str, body) -> None:
    schema = {**PUBLISHED[name]}
    if name in REQUIRED:
        schema["required"] = REQUIRED[name]
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(body)]
    assert not errors, (name, body, errors)


def message_only(answer, status: int) -> None:
    """An error as published: ``{"message"}`` (and nothing liftline-specific)."""
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    conforms("ResponseMsg", answer.body)
    assert list(answer.body) == ["message"], answer.body


def test_every_2_0_operation_answers_as_published(settings, workers, ingest):
    workers.start(app=SKI)
    http = ingest.client(ingest.start(settings, app=SKI))
    ride = "/skiers/3/seasons/2025/days/12/skiers/812"

    # writeNewLiftRide: 201, no body needed; a 2.0 body and a 1.16 body (waitTime).
    first = http.post(ride, {"time": 217, "liftID": 21})
    second = http.post(ride, {"time": 300, "liftID": 5, "waitTime": 3})
    for answer in (first, second):
        assert answer.status == 201 and answer.body == "", answer
        ticket = answer.headers["liftline-ticket"]
        assert re.fullmatch(r"\d+\.[!-~]+\.\d+", ticket)
        assert answer.headers["location"] == f"{ride}?after={ticket}"
    message_only(http.post(ride, {"time": 217, "liftID": 0}), 400)
    message_only(http.post(ride, {"liftID": 3}), 400)
    message_only(http.post("/skiers/3/seasons/2025/days/0/skiers/812",
                           {"time": 1, "liftID": 1}), 400)
    message_only(http.post(ride, raw=b"{not json"), 400)
    # An unknown field is ignored, as the published schema allows it.
    extra = http.post("/skiers/3/seasons/2025/days/12/skiers/900",
                      {"time": 1, "liftID": 1, "note": "x"})
    assert extra.status == 201, extra

    # getSkierDayVertical: a bare integer.
    day = http.get(second.headers["location"])
    assert day.status == 200 and day.body == 210 + 50, day
    conforms("Vertical", day.body)
    message_only(http.get("/skiers/3/seasons/2025/days/13/skiers/812"), 404)
    message_only(http.get("/skiers/3/seasons/2025/days/12/skiers/0"), 400)
    # liftline: the whole day, waitTime kept.
    rides = http.get(f"{ride}/rides?after={second.headers['liftline-ticket']}").body
    assert (rides["rides"], rides["vertical"], rides["waitTime"]) == (2, 260, 3)
    assert rides["liftRides"] == [{"time": 217, "liftID": 21, "waitTime": None},
                                  {"time": 300, "liftID": 5, "waitTime": 3}]

    # getSkierResortTotals: resort and season are arrays, season optional.
    other = http.post("/skiers/4/seasons/2024/days/1/skiers/812", {"time": 9, "liftID": 7})
    totals = http.get(f"/skiers/812/vertical?resort=3&resort=4&after="
                      f"{other.headers['liftline-ticket']}")
    conforms("SkierVertical", totals.body)
    assert [(r["seasonID"], r["totalVert"]) for r in totals.body["resorts"]] == [
        ("2025", 260), ("2024", 70)]
    only = http.get("/skiers/812/vertical?resort=3&resort=4&season=2024&season=1999").body
    assert [(r["seasonID"], r["totalVert"]) for r in only["resorts"]] == [("2024", 70)]
    message_only(http.get("/skiers/812/vertical"), 400)
    message_only(http.get("/skiers/812/vertical?resort=9"), 404)
    message_only(http.get("/skiers/812/vertical?resort=abc"), 404)

    # Resorts: none yet; a season registers its resort (default name), a name renames it.
    conforms("ResortsList", http.get("/resorts").body)
    assert http.get("/resorts").body == {"resorts": []}
    message_only(http.get("/resorts/3/seasons"), 404)
    added = http.post("/resorts/3/seasons", {"year": "2025"})
    assert added.status == 201 and added.body == "", added
    assert added.headers["location"].startswith("/resorts/3/seasons?after=")
    seasons = http.get(added.headers["location"])
    conforms("SeasonsList", seasons.body)
    assert seasons.body == {"seasons": ["2025"]}
    http.post("/resorts/3/seasons", {"year": "2024"})
    message_only(http.post("/resorts/3/seasons", {"year": 2024}), 400)
    message_only(http.post("/resorts/3/seasons", {"year": "24"}), 400)
    named = http.request("PUT", "/resorts/3", {"resortName": "Mission Ridge"})
    assert named.status == 200 and named.body == {"resortID": 3, "resortName": "Mission Ridge"}
    listed = http.get(f"/resorts?after={named.headers['liftline-ticket']}")
    conforms("ResortsList", listed.body)
    assert listed.body == {"resorts": [{"resortName": "Mission Ridge", "resortID": 3}]}
    assert http.get("/resorts/3/seasons?consistency=stale&after="
                    f"{named.headers['liftline-ticket']}").body == {"seasons": ["2024", "2025"]}

    # getResortSkiersDay: all three ids integers; `time` is the resort's name.
    skiers = http.get(f"/resorts/3/seasons/2025/day/12/skiers?after="
                      f"{extra.headers['liftline-ticket']}")
    conforms("ResortSkiers", skiers.body)
    assert skiers.body == {"time": "Mission Ridge", "numSkiers": 2}
    assert http.get("/resorts/4/seasons/2024/day/1/skiers").body == {
        "time": "Resort 4", "numSkiers": 1}
    message_only(http.get("/resorts/5/seasons/2025/day/1/skiers"), 404)
    message_only(http.get("/resorts/3/seasons/abcd/day/12/skiers"), 400)
    message_only(http.get("/resorts/3/seasons/2025/day/367/skiers"), 400)

    # getPerformanceStats: per route, mean and max in ms.
    stats = http.get("/statistics")
    conforms("APIStats", stats.body)
    rows = {(r["operation"], r["URL"]): r for r in stats.body["endpointStats"]}
    posts = rows[("POST", "/skiers/{resortID}/seasons/{seasonID}/days/{dayID}/skiers/{skierID}")]
    assert posts["count"] >= 7 and 0 <= posts["mean"] <= posts["max"]

    # The document declares every published operation with its statuses, and no auth.
    document = http.get("/openapi.json").body
    assert "security" not in document
    for (method, path), statuses in OPERATIONS.items():
        declared = document["paths"][path][method]
        assert statuses <= set(declared["responses"]), (method, path)
        assert "401" not in declared["responses"]


def test_statistics_sum_every_ingest_process(settings, workers, ingest):
    """Requests land on two uvicorn processes; /statistics counts them all, as their
    own /metrics (one process each) add up to."""
    workers.start(app=SKI)
    server = ingest.start(settings, app=SKI, processes=2)
    sent = 0
    lock = threading.Lock()

    def load() -> None:
        nonlocal sent
        for _ in range(25):  # a fresh connection each time: either process may take it
            client = Http(server.url)
            try:
                assert client.get("/resorts").status == 200
            finally:
                client.close()
            with lock:
                sent += 1

    per_process: Counter = Counter()

    def both_processes_seen() -> bool:
        client = Http(server.url)
        try:
            text = client.get("/metrics").body
        finally:
            client.close()
        producer = re.search(r'producer="([^"]+)"', text).group(1)
        counted = sum(int(n) for n in re.findall(
            r'liftline_http_requests_total\{[^}]*route="/resorts",status="200"\} (\d+)', text))
        per_process[producer] = counted
        return len(per_process) >= 2

    # The kernel hands a shared socket's connections to whichever process accepts
    # first: on a busy machine one process can take a whole round, so rounds of 200
    # go on (5 at most) until both have served some.
    for _ in range(5):
        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        per_process.clear()
        wait_until(both_processes_seen, 30, message="/metrics of both processes")
        if all(per_process.values()):
            break
    assert sent >= 200 and sent % 200 == 0, sent
    assert sum(per_process.values()) == sent and all(per_process.values()), (sent, per_process)

    def counted() -> int:
        client = Http(server.url)
        try:
            rows = client.get("/statistics").body["endpointStats"]
        finally:
            client.close()
        return next((r["count"] for r in rows if r["URL"] == "/resorts"), 0)

    # Each process pushes its figures every second: the sum reaches every request sent.
    assert wait_until(lambda: counted() == 200, 10, message="/statistics counting 200")
