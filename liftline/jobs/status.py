"""Job status, results and counters in Redis."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis

from liftline import codec
from liftline.store.keys import Keys
from liftline.store.redis_store import store_error

TERMINAL = ("succeeded", "dead")
_PENDING_TTL_S = 7 * 86_400

# The scripts touch the job's record alone (one key, one slot, so they run on a
# Redis Cluster too). The per-name counters beside them are counted in the same
# round trip, expecting the common outcome, and put right afterwards when a
# script says otherwise (a repeated enqueue, a job that already ended).

# Create the record only if the id is new: idempotent enqueue.
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'name', ARGV[1], 'attempt', 0,
           'updated', ARGV[2], 'key', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


# Mark a job running unless it already ended; returns the state it had (a job
# that was waiting for its retry then leaves the per-name ``retrying`` gauge).
_BEGIN_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'dead' then return state end
redis.call('HSET', KEYS[1], 'state', 'running', 'name', ARGV[1], 'attempt', ARGV[2],
           'updated', ARGV[3], 'worker', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return state or ''
"""


class JobStatus:
    """Reads and writes ``ll:<cluster>:job:<id>`` records and per-name counters."""

    def __init__(self, client: redis.Redis, cluster: str, result_ttl_s: int) -> None:
        self.client = client
        self.cluster = cluster
        self.keys = Keys(cluster)
        self.result_ttl_s = result_ttl_s
        self._create = client.register_script(_CREATE_LUA)
        self._begin = client.register_script(_BEGIN_LUA)

    def create(self, job_id: str, name: str, key: str | None) -> bool:
        """Record a new queued job; False if the id is already known."""
        return self.create_many([(job_id, name, key)])[0]

    def create_many(self, jobs: list[tuple[str, str, str | None]]) -> list[bool]:
        """:meth:`create` for many ``(id, name, key)`` in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for name, count in Counter(name for _, name, _ in jobs).items():
            pipe.sadd(self.keys.job_names, name)
            pipe.hincrby(self.keys.job_stats(name), "enqueued", count)
        now = time.time()
        scripted = [(self._create, [self.keys.job(job_id)],
                     [name, now, key or "", _PENDING_TTL_S]) for job_id, name, key in jobs]
        created = [bool(r) for r in self._execute(pipe, scripted)]
        self._adjust(Counter(
            (name, "enqueued") for (_, name, _), new in zip(jobs, created, strict=True)
            if not new))
        return created

    def _adjust(self, down: Counter[tuple[str, str]]) -> None:
        """Take ``(name, counter)`` down by its count: what was counted for a script
        that did nothing, or a gauge a script's answer says to lower (rare)."""
        if not down:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for (name, counter), count in down.items():
                pipe.hincrby(self.keys.job_stats(name), counter, -count)
            pipe.execute()
        except redis.RedisError as exc:
            raise store_error(exc) from exc

    def settle_many(self, succeeded: list[tuple[str, str, int, bytes]],
                    begin: list[tuple[str, str, int]], worker: str) -> list[str]:
        """One round trip for a turn of the runner: store the results of the
        ``succeeded`` ``(id, name, attempt, packed result)`` jobs (msgpack, as
        ``codec.pack`` made it), then mark the ``begin``
        ``(id, name, attempt)`` jobs running unless they ended already; returns the
        previous state of each ``begin`` job."""
        pipe = self.client.pipeline(transaction=False)
        now = time.time()
        per_name: dict[str, int] = {}
        for job_id, name, attempt, result in succeeded:
            key = self.keys.job(job_id)
            pipe.hset(key, mapping={"state": "succeeded", "attempt": attempt,
                                    "updated": now, "name": name, "error": "",
                                    "result": result})
            pipe.expire(key, self.result_ttl_s)
            per_name[name] = per_name.get(name, 0) + 1
        minute = int(now // 60)
        for name, count in per_name.items():
            self._count_success(pipe, name, minute, count)
        for name, count in Counter(name for _, name, _ in begin).items():
            pipe.hincrby(self.keys.job_stats(name), "started", count)
        scripted = [(self._begin, [self.keys.job(job_id)],
                     [name, attempt, now, worker, _PENDING_TTL_S])
                    for job_id, name, attempt in begin]
        before = [s.decode() if isinstance(s, bytes) else str(s)
                  for s in self._execute(pipe, scripted)]
        self._adjust(Counter(
            (name, "started" if state in TERMINAL else "retrying")
            for (_, name, _), state in zip(begin, before, strict=True)
            if state in TERMINAL or state == "retrying"))
        return before

    def _execute(self, pipe: Any, scripted: list[tuple[Any, list[str], list[Any]]]
                 ) -> list[Any]:
        """Run ``pipe`` with the ``(script, keys, args)`` calls after its commands, in
        one round trip; returns the scripts' replies.

        Scripts are called by their digest alone (redis-py would ask SCRIPT EXISTS
        first, a second round trip every time); one that Redis no longer knows (a
        restart, SCRIPT FLUSH) is loaded and that call alone is made again.
        """
        try:
            plain = len(pipe)
            for script, keys, args in scripted:
                # execute_command: a cluster pipeline refuses pipe.evalsha, not EVALSHA
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            out = replies[plain:]
            for n, reply in enumerate(out):
                if isinstance(reply, redis.exceptions.NoScriptError):
                    script, keys, args = scripted[n]
                    out[n] = script(keys=keys, args=args)  # loads it, then EVALSHA
            for reply in (*replies[:plain], *out):
                if isinstance(reply, redis.RedisError):
                    raise reply
            return list(out)
        except redis.RedisError as exc:
            raise store_error(exc) from exc

    def _count_success(self, pipe: Any, name: str, minute: int, count: int = 1) -> None:
        """The per-name success counter and the per-minute bucket `stats` rates from."""
        pipe.hincrby(self.keys.job_stats(name), "succeeded", count)
        rate_key = self.keys.job_rate(name, minute)
        pipe.incrby(rate_key, count)
        pipe.expire(rate_key, 180)

    def forget(self, job_id: str) -> None:
        try:
            self.client.delete(self.keys.job(job_id))
        except redis.RedisError as exc:
            raise store_error(exc) from exc

    def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            raw = self.client.hgetall(self.keys.job(job_id))
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        if not raw:
            return None
        rec: dict[str, Any] = {k.decode(): v for k, v in raw.items()}
        out: dict[str, Any] = {"id": job_id}
        for field in ("state", "name", "error", "traceback", "key", "worker"):
            if field in rec:
                out[field] = rec[field].decode(errors="replace")
        out["attempt"] = int(rec.get("attempt", 0))
        out["updated"] = float(rec.get("updated", 0))
        if "result" in rec:
            out["result"] = codec.unpack(rec["result"])
        return out

    def set(self, job_id: str, name: str, state: str, *, attempt: int, counter: str | None = None,
            **fields: Any) -> None:
        """Move a job to ``state``; terminal states expire after the result TTL."""
        mapping: dict[str, Any] = {"state": state, "attempt": attempt, "updated": time.time(),
                                   "name": name}
        for k, v in fields.items():
            mapping[k] = codec.pack(v) if k == "result" else ("" if v is None else str(v))
        ttl = self.result_ttl_s if state in TERMINAL else _PENDING_TTL_S
        try:
            # The record and its counter live in different slots (a Redis Cluster
            # may hold them on two nodes): one round trip, not one transaction.
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.keys.job(job_id), mapping=mapping)
            pipe.expire(self.keys.job(job_id), ttl)
            if counter:
                if counter == "succeeded":
                    self._count_success(pipe, name, int(time.time() // 60))
                else:
                    pipe.hincrby(self.keys.job_stats(name), counter, 1)
            pipe.execute()
        except redis.RedisError as exc:
            raise store_error(exc) from exc

    def stats(self) -> list[dict[str, Any]]:
        """Per job name: enqueued, queued, running, retrying (waiting for their next
        attempt), succeeded, failed attempts, dead (ever), rate/s."""
        try:
            names = sorted(n.decode() for n in self.client.smembers(self.keys.job_names))
            out = []
            minute = int(time.time() // 60)
            for name in names:
                raw = {k.decode(): int(v) for k, v in
                       self.client.hgetall(self.keys.job_stats(name)).items()}
                last = int(self.client.get(self.keys.job_rate(name, minute - 1)) or 0)
                now = int(self.client.get(self.keys.job_rate(name, minute)) or 0)
                done = raw.get("succeeded", 0)
                dead = raw.get("dead", 0)
                running = max(0, raw.get("started", 0) - done - raw.get("failed", 0))
                retrying = max(0, raw.get("retrying", 0))
                out.append({
                    "name": name, "enqueued": raw.get("enqueued", 0),
                    "queued": max(0, raw.get("enqueued", 0) + raw.get("replayed", 0)
                                  - done - dead - running - retrying),
                    "running": running, "retrying": retrying, "succeeded": done,
                    "failed_attempts": raw.get("failed", 0), "dead": dead,
                    "rate_per_s": round((last + now) / (60 + time.time() % 60), 2),
                })
            return out
        except redis.RedisError as exc:
            raise store_error(exc) from exc
