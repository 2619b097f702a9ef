"""The HTTP ingest service end to end: real HTTP, real RabbitMQ, Redis and workers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict

from helpers import wait_until
from http_ingest import Http
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from openapi_fuzz import operations, requests, route_matches
from pipeline import Model, Workers, redis_state, wait_flushed

from examples.skiresort import lift_vertical
from liftline.cluster.registry import owners_of
from liftline.partitioning import partition_for
from liftline.store.keys import Keys
from liftline.tickets import Ticket

SKI = "examples.skiresort:app"


def _tickets(texts):
    return [Ticket.parse(t) for t in texts]


def _load(http: Http, thread_no: int, count: int, model: Model, lock: threading.Lock,
          tickets: list[str]) -> None:
    """``count`` single writes and a few batches; shared keys take commutative incrs only."""
    rng = random.Random(thread_no)
    own = f"t{thread_no}"
    mine = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.4:
            write = {"op": "incr", "key": f"shared:{rng.randrange(50)}",
                     "value": rng.choice([1, 5])}
        elif roll < 0.55:
            write = {"op": "set", "key": f"{own}:k{rng.randrange(40)}", "value": {"n": i}}
        elif roll < 0.65:
            write = {"op": "merge", "key": f"{own}:m{rng.randrange(10)}", "value": {f"f{i % 3}": i}}
        elif roll < 0.75:
            write = {"op": "append", "key": f"{own}:l{rng.randrange(5)}", "value": i, "cap": 4}
        elif roll < 0.85:
            write = {"op": "setnx", "key": f"{own}:once{rng.randrange(20)}", "value": i}
        elif roll < 0.93:
            write = {"op": "delete", "key": f"{own}:k{rng.randrange(40)}"}
        else:
            batch = [{"op": "incr", "key": f"{own}:b{rng.randrange(8)}", "value": 2}
                     for _ in range(rng.randrange(1, 30))]
            # A batch: {"writes": [...]} on /v1/batch, or a bare array on /v1/writes.
            answer = (http.post("/v1/batch", {"writes": batch}) if rng.random() < 0.5
                      else http.post("/v1/writes", batch))
            assert answer.status == 202, answer
            assert len(answer.body["tickets"]) == len(batch)
            mine.append((batch, answer.body["tickets"]))
            continue
        answer = http.post("/v1/writes", write)
        assert answer.status == 202, answer
        assert answer.headers["location"] == f"/v1/tickets/{answer.ticket}"
        mine.append(([write], [answer.ticket]))
    with lock:
        for writes, texts in mine:
            for w in writes:
                model.apply(w["op"], w["key"], w.get("value"), w.get("cap"))
            tickets.extend(texts)


def test_writes_over_http_from_two_processes_match_a_fold(settings, workers, redis_client,
                                                          ingest):
    workers.start()
    server = ingest.start(settings, processes=2)
    http = ingest.client(server)
    model, lock, tickets = Model(), threading.Lock(), []
    threads = [threading.Thread(target=_load, args=(ingest.client(server), n, 250, model, lock,
                                                    tickets)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(tickets) == len(set(tickets)) > 1000
    wait_flushed(redis_client, settings, _tickets(tickets))
    assert redis_state(redis_client, settings) == model.values
    for key, value in sorted(model.values.items()):
        answer = http.get(f"/v1/keys/{key}")
        assert (answer.status, answer.body["value"]) == (200, value), key
    assert http.get("/v1/keys/never-written").status == 404
    assert http.get("/readyz").body["broker"] == "connected"
    # Metrics are per process and a connection may land on either: ask until one
    # that took writes answers.
    metrics = wait_until(
        lambda: next((b for b in [ingest.client(server).get("/metrics").body]
                      if 'liftline_ingest_writes_total{producer="' in b), None),
        20, message="metrics of a process that took writes")
    assert 'route="/v1/writes",status="202"' in metrics


def test_read_consistency_levels(settings, workers, redis_client, ingest):
    workers.start()
    # A registered worker claims its partitions a moment later; reads need owners.
    keys = Keys(settings.cluster)
    wait_until(lambda: len(owners_of(redis_client, keys)) == settings.partitions, 30,
               message="every partition owned")
    http = ingest.client(ingest.start(settings))
    first = http.post("/v1/writes", {"op": "set", "key": "gate:1", "value": "open"})
    # Read-your-writes: the owner waits until the write is applied; no polling needed.
    answer = http.get(f"/v1/keys/gate:1?after={first.ticket}&timeout_ms=5000")
    assert (answer.status, answer.body.get("value"), answer.body.get("version")) == \
        (200, "open", 1), answer.body
    # A ticket of another partition: its owner is asked first, then the key's owner.
    other = next(f"lift:{n}" for n in range(100)
                 if partition_for(f"lift:{n}", settings.partitions)
                 != partition_for("gate:1", settings.partitions))
    second = http.post("/v1/writes", {"op": "incr", "key": other, "value": 7})
    answer = http.get(f"/v1/keys/{other}?after={second.ticket}")
    assert answer.body["value"] == 7
    answer = http.get(f"/v1/keys/gate:1?after={second.ticket}")
    assert answer.body["value"] == "open"
    # Primary (no ticket) and stale (Redis, after a flush) converge on the same value.
    assert http.get("/v1/keys/gate:1?consistency=primary").body["value"] == "open"
    wait_until(lambda: http.get("/v1/keys/gate:1?consistency=stale").status == 200, 10)
    stale = http.get("/v1/keys/gate:1?consistency=stale").body
    assert (stale["value"], stale["source"]) == ("open", "redis")
    # A write that never happened: 504 within the timeout, with the owner's position.
    ticket = Ticket.parse(first.ticket)
    future = Ticket(ticket.partition, ticket.producer_id, ticket.seq + 1000)
    began = time.monotonic()
    late = http.get(f"/v1/keys/gate:1?after={future}&timeout_ms=300")
    assert late.status == 504, late
    assert 0.25 < time.monotonic() - began < 3
    assert late.body["error"] == "not_applied" and late.body["applied_seq"] == ticket.seq
    assert late.body["ticket"] == str(future)
    # Stale with a ticket: answered once that write is persisted, from Redis.
    persisted = http.get(f"/v1/keys/gate:1?after={first.ticket}&consistency=stale")
    assert (persisted.status, persisted.body["value"], persisted.body["source"]) == (
        200, "open", "redis")
    late = http.get(f"/v1/keys/gate:1?after={future}&consistency=stale&timeout_ms=100")
    assert (late.status, late.body["error"]) == (504, "not_applied"), late
    assert http.get("/v1/keys/gate:1?after=nonsense").body["field"] == "after"
    assert http.get("/v1/keys/gate:1?timeout_ms=-1").body["field"] == "timeout_ms"


def test_ticket_goes_queued_applied_persisted(settings, redis_client, ingest, tmp_path):
    # A long flush interval leaves time to see the write applied but not yet persisted.
    slow = settings.replace(flush_interval_ms=2000)
    http = ingest.client(ingest.start(slow))
    answer = http.post("/v1/writes", {"op": "set", "key": "skier:812", "value": {"lift": 21}})
    assert answer.status == 202
    ticket = answer.ticket
    # No worker yet: RabbitMQ holds the write, nobody applied it.
    for _ in range(3):
        status = http.get(f"/v1/tickets/{ticket}").body
        assert status["status"] == "queued", status
    pool = Workers(slow, redis_client, tmp_path)
    try:
        pool.start()
        seen = []

        def persisted() -> bool:
            state = http.get(f"/v1/tickets/{ticket}").body["status"]
            if not seen or seen[-1] != state:
                seen.append(state)
            return state == "persisted"

        wait_until(persisted, 30, interval_s=0.02)
        assert seen[-2:] == ["applied", "persisted"], seen
        assert seen in (["queued", "applied", "persisted"], ["applied", "persisted"])
        body = http.get(f"/v1/tickets/{ticket}").body
        assert body["persisted_seq"] >= Ticket.parse(ticket).seq
        assert http.get("/v1/tickets/0.x").body["field"] == "ticket"
        assert http.get(f"/v1/tickets/{settings.partitions}.abc.1").status == 422
    finally:
        pool.stop_all()


def test_ski_resort_routes_match_a_fold(settings, workers, redis_client, ingest):
    workers.start(app=SKI)
    http = ingest.client(ingest.start(settings, app=SKI))
    rng = random.Random(7)
    days = defaultdict(lambda: {"rides": 0, "vertical": 0})
    seasons: dict[tuple[int, int], Counter] = defaultdict(Counter)
    skiers = defaultdict(set)
    tickets = []
    for _ in range(300):
        resort, season, day = rng.randint(1, 2), rng.choice(["2024", "2025"]), rng.randint(1, 3)
        skier, lift = rng.randint(1, 40), rng.randint(1, 40)
        answer = http.post(f"/skiers/{resort}/seasons/{season}/days/{day}/skiers/{skier}",
                           {"time": rng.randint(1, 360), "liftID": lift})
        assert answer.status == 201, answer
        tickets.append(answer.headers["liftline-ticket"])
        days[(resort, season, day, skier)]["rides"] += 1
        days[(resort, season, day, skier)]["vertical"] += lift_vertical(lift)
        seasons[(resort, skier)][season] += lift_vertical(lift)
        skiers[(resort, season, day)].add(skier)
    for resort in (1, 2):
        for year in ("2024", "2025"):
            answer = http.post(f"/resorts/{resort}/seasons", {"year": year})
            assert answer.status == 201, answer
            tickets.append(answer.headers["liftline-ticket"])
    last = answer.headers["liftline-ticket"]
    assert http.get(f"/resorts/2/seasons?after={last}").body["seasons"] == ["2024", "2025"]
    wait_flushed(redis_client, settings, _tickets(tickets))
    for (resort, season, day, skier), want in days.items():
        path = f"/skiers/{resort}/seasons/{season}/days/{day}/skiers/{skier}"
        assert http.get(path).body == want["vertical"]  # a bare integer, as published
        got = http.get(path + "/rides").body
        assert (got["rides"], got["vertical"]) == (want["rides"], want["vertical"])
    for (resort, skier), totals in seasons.items():
        got = http.get(f"/skiers/{skier}/vertical?resort={resort}&consistency=stale").body
        assert got == {"resorts": [{"seasonID": s, "totalVert": v, "resortID": resort}
                                   for s, v in sorted(totals.items())]}
        only = http.get(f"/skiers/{skier}/vertical?resort={resort}&season=2025")
        if "2025" in totals:
            assert only.body["resorts"] == [{"seasonID": "2025", "totalVert": totals["2025"],
                                             "resortID": resort}]
        else:
            assert only.status == 404
    for (resort, season, day), who in skiers.items():
        got = http.get(f"/resorts/{resort}/seasons/{season}/day/{day}/skiers").body
        assert got == {"time": f"Resort {resort}", "numSkiers": len(who)}
    assert http.get("/resorts").body == {"resorts": [{"resortName": "Resort 1", "resortID": 1},
                                                     {"resortName": "Resort 2", "resortID": 2}]}
    assert http.get("/skiers/1/seasons/2025/days/300/skiers/9999").status == 404
    # Read-your-writes through a ski route: the Location of the 201 reads it back.
    answer = http.post("/skiers/1/seasons/2025/days/99/skiers/812", {"time": 217, "liftID": 21})
    assert answer.headers["location"] == ("/skiers/1/seasons/2025/days/99/skiers/812?after="
                                          + answer.headers["liftline-ticket"])
    assert http.get(answer.headers["location"]).body == 210


def test_refusals_are_json_naming_the_field_and_send_nothing(settings, workers, redis_client,
                                                              ingest):
    workers.start(app=SKI)
    http = ingest.client(ingest.start(settings, app=SKI, ingest_max_body_bytes=100_000,
                                      ingest_max_batch_writes=10))

    def refused(status: int, field: str | None, answer) -> None:
        assert answer.status == status, answer
        assert answer.headers["content-type"] == "application/json"
        assert answer.body["field"] == field, answer.body
        assert answer.body["error"] and answer.body["message"]

    def ski_refused(field: str, answer) -> None:
        """The Ski Data API's shape: 400 with {"message"} alone, naming the field."""
        assert (answer.status, list(answer.body)) == (400, ["message"]), answer
        assert answer.body["message"].startswith(f"{field}: "), answer.body

    refused(413, None, http.post("/v1/writes", raw=b"[" + b" " * 100_001 + b"]"))
    refused(400, None, http.post("/v1/writes", raw=b'{"op": "set", "key": '))
    refused(400, None, http.post("/v1/writes", raw=b"\xff\xfe"))
    refused(400, None, http.post("/v1/writes", raw=b'{"op":"incr","key":"n","value":NaN}'))
    refused(415, None, http.post("/v1/writes", raw=b"{}", headers={"Content-Type": "text/csv"}))
    refused(422, "[0]", http.post("/v1/writes", [1, 2]))  # an array is a batch of writes
    refused(422, "[1].key", http.post("/v1/writes", [{"op": "incr", "key": "x", "value": 1},
                                                     {"op": "incr", "value": 1}]))
    refused(422, "body", http.post("/v1/writes", []))
    refused(422, "body", http.post("/v1/writes", [{"op": "incr", "key": "x", "value": 1}] * 11))
    refused(422, "key", http.post("/v1/writes", {"op": "set", "value": 1}))
    refused(422, "key", http.post("/v1/writes", {"op": "set", "key": "k" * 513, "value": 1}))
    refused(422, "op", http.post("/v1/writes", {"op": "explode", "key": "a", "value": 1}))
    refused(422, "value", http.post("/v1/writes", {"op": "incr", "key": "a", "value": "x"}))
    refused(422, "value", http.post("/v1/writes", {"op": "set", "key": "a"}))
    refused(422, "value", http.post("/v1/writes", {"op": "incr", "key": "a", "value": 2**70}))
    refused(422, "value", http.post("/v1/writes", {"op": "set", "key": "a",
                                                   "value": "x" * 70_000}))
    deep: list = []
    for _ in range(40):
        deep = [deep]
    refused(422, "value", http.post("/v1/writes", {"op": "set", "key": "a", "value": deep}))
    refused(422, "colour", http.post("/v1/writes", {"op": "set", "key": "a", "value": 1,
                                                    "colour": "red"}))
    refused(422, "expected_version", http.post("/v1/writes", {"op": "cas", "key": "a",
                                                              "value": 1}))
    refused(422, "cap", http.post("/v1/writes", {"op": "append", "key": "a", "value": 1,
                                                 "cap": 0}))
    good = {"op": "incr", "key": "batched", "value": 1}
    refused(422, "writes[2].value", http.post("/v1/batch", {"writes": [
        good, good, {"op": "set", "key": "a", "value": "x" * 70_000}]}))
    refused(422, "writes[1].op", http.post("/v1/batch", {"writes": [good, {"key": "a"}]}))
    refused(422, "writes", http.post("/v1/batch", {"writes": [good] * 11}))
    refused(422, "writes", http.post("/v1/batch", {"writes": []}))
    ride = "/skiers/1/seasons/2025/days/3/skiers/812"
    ski_refused("liftID", http.post(ride, {"time": 10, "liftID": 0}))
    ski_refused("time", http.post(ride, {"liftID": 3}))
    ski_refused("time", http.post(ride, {"time": 1.5, "liftID": 3}))
    ski_refused("waitTime", http.post(ride, {"time": 1, "liftID": 3, "waitTime": -1}))
    ski_refused("skierID", http.post("/skiers/1/seasons/2025/days/3/skiers/abc",
                                     {"time": 1, "liftID": 3}))
    ski_refused("seasonID", http.post("/skiers/1/seasons/25/days/3/skiers/1",
                                      {"time": 1, "liftID": 3}))
    ski_refused("dayID", http.get("/skiers/1/seasons/2025/days/367/skiers/1"))
    ski_refused("resort", http.get("/skiers/812/vertical"))
    refused(404, None, http.get("/no/such/route"))
    refused(405, None, http.request("DELETE", "/v1/writes"))
    # Nothing refused reached a stream: only the good write below is applied.
    last = http.post("/v1/writes", {"op": "set", "key": "good", "value": 1})
    assert last.status == 202
    wait_flushed(redis_client, settings, [Ticket.parse(last.ticket)])
    assert redis_state(redis_client, settings) == {"good": 1}


def test_bearer_tokens(settings, workers, ingest):
    workers.start()
    server = ingest.start(settings, ingest_tokens="tok-a, tok-b")
    anonymous = ingest.client(server)
    write = {"op": "incr", "key": "k", "value": 1}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dG9rLWE="},
                    {"Authorization": "Bearer"}):
        answer = anonymous.post("/v1/writes", write, headers=headers)
        assert answer.status == 401, (headers, answer)
        assert answer.body["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.get("/v1/keys/k").status == 401
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert anonymous.get(path).status == 200, path
    page = anonymous.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.body  # the page renders the live document
    assert ingest.client(server, token="tok-b").post("/v1/writes", write).status == 202
    assert ingest.client(server, token="tok-a").get("/v1/keys/k").status == 200


def test_fuzz_from_openapi_never_5xx(settings, workers, ingest):
    workers.start(app=SKI)
    http = ingest.client(ingest.start(settings, app=SKI), timeout_s=10)
    document = http.get("/openapi.json").body
    # Not JSON: the metrics text, and the pages for a browser.
    ops = [op for op in operations(document) if op.path not in ("/metrics", "/docs", "/dashboard")]
    assert len(ops) >= 12
    counts: Counter = Counter()

    @seed(20261123)
    @hsettings(max_examples=300, deadline=None, database=None, derandomize=False,
               suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data) -> None:
        op = data.draw(st.sampled_from(ops))
        generated = data.draw(requests(op, document))
        answer = http.request(op.method, generated.url, raw=generated.body,
                              headers=generated.headers)
        allowed = op.statuses | ({404} if not route_matches(op, generated.url) else set())
        assert answer.status in allowed, (op.method, generated.url, generated.body, answer)
        assert answer.status < 500 or answer.status in (503, 504) and answer.status in op.statuses
        assert answer.status != 503, answer  # the servers are up: no reason to refuse
        ski = op.path.startswith(("/skiers", "/resorts", "/statistics"))
        # The Ski Data API answers some requests with a bare integer or no body at all.
        assert isinstance(answer.body, dict) or ski and answer.status < 400, answer
        if answer.status >= 400 and ski:
            assert "message" in answer.body, answer.body  # the Ski Data API's ResponseMsg
        elif answer.status >= 400:
            assert {"error", "message", "field"} <= set(answer.body), answer.body
            if answer.status == 422:
                assert answer.body["field"] is not None, answer.body
        counts[(op.method, op.path, answer.status)] += 1

    began = time.monotonic()
    check()
    assert time.monotonic() - began < 60
    # The generator reached both sides: accepted requests and refused ones.
    statuses = Counter(status for (_m, _p, status) in counts.elements())
    assert statuses[202] and statuses[422] and statuses[200], statuses
    assert http.get("/readyz").status == 200
