"""The baseline of the ingest benchmark: a bare Starlette handler writing straight to Redis.

Same route, body checks and uvicorn setup as the liftline lift-ride route, but
no queue: each request updates Redis directly (one pipelined round trip:
HINCRBY rides and vertical of the skier's day, HINCRBY the season's vertical,
SADD the day's skiers) and answers 201. What it does not give: a ticket,
batching, replicas, or an acknowledgement that survives a Redis crash beyond
its append-only fsync policy.
"""

from __future__ import annotations

import json
import os

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PATH = "/skiers/{resort:int}/seasons/{season}/days/{day:int}/skiers/{skier:int}"


def create() -> Starlette:
    """uvicorn factory; the Redis URL comes from LIFTLINE_BENCH_BASELINE_REDIS_URL."""
    client = aioredis.Redis.from_url(os.environ["LIFTLINE_BENCH_BASELINE_REDIS_URL"])

    async def ride(request: Request) -> Response:
        p = request.path_params
        try:
            body = json.loads(await request.body())
            lift, minute = int(body["liftID"]), int(body["time"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "invalid"}, 422)
        if not (1 <= lift <= 100 and 1 <= minute <= 1440):
            return JSONResponse({"error": "invalid"}, 422)
        vertical = lift * 10
        day = f"base:{p['resort']}:{p['season']}:{p['day']}:skier:{p['skier']}"
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(day, "rides", 1)
        pipe.hincrby(day, "vertical", vertical)
        pipe.hincrby(f"base:{p['resort']}:skier:{p['skier']}:seasons", p["season"], vertical)
        pipe.sadd(f"base:{p['resort']}:{p['season']}:{p['day']}:skiers", p["skier"])
        await pipe.execute()
        return JSONResponse({"ok": True}, 201)

    return Starlette(routes=[Route(PATH, ride, methods=["POST"])])


def main() -> None:
    """``python -m benchmarks.ingest_baseline PORT PROCESSES REDIS_URL``."""
    import sys

    from liftline.ingest.server import serve
    from liftline.settings import Settings

    port, processes, redis_url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.environ["LIFTLINE_BENCH_BASELINE_REDIS_URL"] = redis_url
    serve(Settings.from_env({}, ingest_port=port), processes=processes,
          factory="benchmarks.ingest_baseline:create")


if __name__ == "__main__":
    main()
