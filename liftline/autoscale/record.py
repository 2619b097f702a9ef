"""The autoscaler's decisions in Redis, for `liftline status`, tests and benchmarks.

``ll:<cluster>:autoscale`` (hash): ``last`` = the latest decision (JSON),
``change`` = the latest decision that changed the pool, ``pool`` = what the
scaler reports (backend, pids), ``updated``. ``ll:<cluster>:autoscale:samples``
(list, newest last, capped): one line per evaluation with the backlog and the
pool, a time series to plot. Both expire a day after the last write.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from liftline.autoscale.policy import DOWN, UP, Decision
from liftline.errors import StoreError, StoreUnavailable
from liftline.store.keys import Keys

SAMPLES_KEPT = 5000
TTL_S = 86_400


def store(client: redis.Redis, cluster: str, decision: Decision, pool: dict[str, Any],
          extra: dict[str, Any] | None = None) -> None:
    """Record one decision (and the sample it makes)."""
    last = {**decision.to_dict(), **(extra or {})}
    sample = {"t": decision.at, "backlog": decision.backlog, "streams": decision.stream_backlog,
              "jobs": decision.job_backlog, "current": decision.current,
              "desired": decision.desired, "action": decision.action}
    mapping: dict[Any, Any] = {
        "last": json.dumps(last), "pool": json.dumps(pool), "updated": time.time()}
    if decision.action in (UP, DOWN):
        mapping["change"] = mapping["last"]
    try:
        pipe = client.pipeline(transaction=False)  # two keys, maybe two cluster nodes
        pipe.hset(Keys(cluster).autoscale, mapping=mapping)
        pipe.expire(Keys(cluster).autoscale, TTL_S)
        pipe.rpush(Keys(cluster).autoscale_samples, json.dumps(sample))
        pipe.ltrim(Keys(cluster).autoscale_samples, -SAMPLES_KEPT, -1)
        pipe.expire(Keys(cluster).autoscale_samples, TTL_S)
        pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"recording the autoscaler's decision failed: {exc}") from exc


def load(client: redis.Redis, cluster: str) -> dict[str, Any] | None:
    """The last decision, the last change and the pool, or None if no autoscaler ran."""
    try:
        raw = client.hgetall(Keys(cluster).autoscale)
    except redis.RedisError as exc:
        raise StoreError(f"reading the autoscaler's state failed: {exc}") from exc
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    out: dict[str, Any] = {"updated": float(fields.get("updated", 0))}
    for name in ("last", "change", "pool"):
        if name in fields:
            out[name] = json.loads(fields[name])
    out["age_s"] = round(time.time() - out["updated"], 3)
    return out


def samples(client: redis.Redis, cluster: str, last: int | None = None
            ) -> list[dict[str, Any]]:
    """The recorded evaluations (the ``last`` ones only, if given), oldest first."""
    start = 0 if last is None else -max(1, last)
    try:
        return [json.loads(x) for x in client.lrange(Keys(cluster).autoscale_samples, start, -1)]
    except redis.RedisError as exc:
        raise StoreError(f"reading the autoscaler's samples failed: {exc}") from exc
