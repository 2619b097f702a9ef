"""The durable copy of every partition in Redis: flush, load, fencing.

A flush writes a partition's changed keys, its stream offset, its producer
watermarks, the gaps in their sequences and its dead letters in one Lua script,
so Redis always holds a state that equals the fold of the stream up to the
stored offset. The script refuses a flush whose epoch is older than the
partition's (fencing).
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, NamedTuple, cast

import msgpack
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aioredis_cluster
import redis.asyncio.sentinel as aioredis_sentinel
import redis.cluster
import redis.sentinel

from liftline import codec
from liftline.errors import ConfigError, Fenced, StoreError, StoreUnavailable
from liftline.store.keys import Keys
from liftline.store.memory import Entry, FlushBatch, pack_entry

# ARGV: epoch, offset, n_changed, n_deleted, n_watermarks, n_dead, now, n_expired,
#       horizon, n_gaps, the offset the owner last flushed ('': not checked), then
#       key/value pairs, deleted keys, producer/seq pairs, expired producer ids,
#       dead-letter payloads, producer/gap-ranges pairs (an empty value deletes).
#       Watermarks and gaps are the changed ones only.
_FLUSH_LUA = """
local current = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
local epoch = tonumber(ARGV[1])
if current > epoch then
  return {0, current}
end
-- Redis must hold at least the offset the owner last flushed (ARGV[11]); more is a
-- flush of its that failed yet landed. Less means Redis lost flushes it had counted
-- (a failover to a replica that lacked them): the owner's next changes would land
-- on a hole, so it must load the partition again.
local stored = tonumber(redis.call('HGET', KEYS[2], 'offset') or '-1')
if ARGV[11] ~= '' and stored < tonumber(ARGV[11]) then
  return {2, stored}
end
local nset, ndel = tonumber(ARGV[3]), tonumber(ARGV[4])
local nwm, ndead, nexp = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8])
local ngaps = tonumber(ARGV[10])
-- Runs cmd on key over count arguments from ARGV[first], step at a time (unpack
-- has a limit); returns the index after them.
local function in_steps(cmd, key, first, count, step)
  local i, last = first, first + count - 1
  while i <= last do
    local stop = math.min(i + step - 1, last)
    redis.call(cmd, key, unpack(ARGV, i, stop))
    i = stop + 1
  end
  return last + 1
end
local i = in_steps('HSET', KEYS[1], 12, 2 * nset, 1000)
i = in_steps('HDEL', KEYS[1], i, ndel, 500)
i = in_steps('HSET', KEYS[3], i, 2 * nwm, 1000)
in_steps('HDEL', KEYS[5], i, nexp, 500)  -- an expired producer's gaps go with it
i = in_steps('HDEL', KEYS[3], i, nexp, 500)
-- Redis does not shrink a hash's table as fields go: a watermark hash left with
-- fewer entries than just expired is written anew, small, so its memory returns.
if nexp > 0 then
  local left = redis.call('HLEN', KEYS[3])
  if left > 0 and left < nexp and left <= 64 then
    local marks = redis.call('HGETALL', KEYS[3])
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[3], unpack(marks))
  end
end
for j = i, i + ndead - 1 do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100000', '*', 'r', ARGV[j])
end
i = i + ndead
for j = i, i + 2 * ngaps - 1, 2 do
  if ARGV[j + 1] == '' then
    redis.call('HDEL', KEYS[5], ARGV[j])
  else
    redis.call('HSET', KEYS[5], ARGV[j], ARGV[j + 1])
  end
end
redis.call('HSET', KEYS[2], 'offset', ARGV[2], 'flushed_at', ARGV[7], 'epoch', epoch,
           'horizon', ARGV[9])
return {1, epoch}
"""

# Bumps the epoch (fencing every earlier owner) and returns it with the
# flushed offset, which no older owner can move any more.
# The owners hash (where readers look owners up) is written beside it, in the
# same round trip: it is in another slot, and only a hint (owners confirm).
_CLAIM_LUA = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
local offset = redis.call('HGET', KEYS[1], 'offset') or '-1'
return {epoch, offset}
"""


def store_error(exc: redis.RedisError) -> StoreError:
    """The liftline error for a redis-py error: StoreUnavailable when Redis cannot be
    reached (retryable), StoreError otherwise. Raise it ``from exc``."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return StoreUnavailable(f"Redis unreachable: {exc}")
    return StoreError(f"Redis error: {exc}")


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``host:port[,host:port…]`` (after any ``user:password@``) as pairs."""
    hosts = netloc.rpartition("@")[2]
    try:
        return [(h.rpartition(":")[0] or h, int(h.rpartition(":")[2] or default_port))
                for h in hosts.split(",") if h]
    except ValueError as exc:
        raise ConfigError(f"redis_url: bad host list {hosts!r} ({exc})") from exc


class SentinelUrl(NamedTuple):
    """``redis+sentinel://[:password@]host:port[,host:port…]/service[/db]``."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        parts = urllib.parse.urlsplit(url)
        password = urllib.parse.unquote(parts.password) if parts.password else None
        path = [p for p in parts.path.split("/") if p]
        sentinels = _hosts(parts.netloc, 26379)
        try:
            db = int(path[1]) if len(path) > 1 else 0
        except ValueError as exc:
            raise ConfigError(f"redis_url: bad Sentinel URL ({exc})") from exc
        if not sentinels or not path:
            raise ConfigError("redis_url: a Sentinel URL is "
                              "redis+sentinel://host:port[,host:port…]/service[/db]")
        return cls(sentinels, path[0], db, password)


def connect(url: str, *, timeout_s: float | None = None) -> redis.Redis:
    """A Redis client for ``url``; connects lazily, retries nothing by itself.

    ``timeout_s`` bounds each connect and each reply (default: 5 s to connect,
    10 s for a reply): commands that must answer a person quickly pass less.
    With a ``redis+sentinel://`` URL the client asks the Sentinels for the
    service's current primary and asks again after a connection fails, so it
    follows a failover; scripts are loaded again where the new primary lacks them
    (redis-py's Script does so on NOSCRIPT). With ``redis+cluster://`` it is a
    RedisCluster, which answers every command liftline sends as redis.Redis does
    (each partition's keys share a hash tag, so each script runs on one node).
    """
    return cast(redis.Redis, _client(url, timeout_s or 10, timeout_s or 5, _BLOCKING))


def aconnect(url: str, *, timeout_s: float = 5) -> aioredis.Redis:
    """The asyncio client for ``url`` (the HTTP service's); as :func:`connect`."""
    return cast(aioredis.Redis, _client(url, timeout_s, timeout_s, _ASYNCIO))


# redis-py's blocking and asyncio clients: plain, cluster, cluster node, Sentinel.
_BLOCKING = (redis.Redis, redis.cluster.RedisCluster, redis.cluster.ClusterNode,
             redis.sentinel.Sentinel)
_ASYNCIO = (aioredis.Redis, aioredis_cluster.RedisCluster, aioredis_cluster.ClusterNode,
            aioredis_sentinel.Sentinel)


class _SentinelPool(redis.sentinel.SentinelConnectionPool):  # type: ignore[misc]
    """The pool of a client that follows a Sentinel-named primary. Closed (when its
    client is), it also closes its connections to the Sentinels, which redis-py leaves
    open: one unclosed socket (a ResourceWarning) per Sentinel asked."""

    def close(self) -> None:
        super().close()
        for asker in self.sentinel_manager.sentinels:
            asker.close()


def _client(url: str, reply_s: float, connect_s: float, kinds: tuple[Any, ...]) -> Any:
    plain, cluster, node, sentinel = kinds
    timeouts = {"socket_timeout": reply_s, "socket_connect_timeout": connect_s}
    if url.startswith("redis+cluster://"):
        parts = urllib.parse.urlsplit(url)
        return cluster(startup_nodes=[node(h, p) for h, p in _hosts(parts.netloc, 6379)],
                       password=urllib.parse.unquote(parts.password) if parts.password else None,
                       **timeouts)
    if url.startswith("redis+sentinel://"):
        spec = SentinelUrl.parse(url)
        asker = sentinel(spec.sentinels, socket_timeout=connect_s, sentinel_kwargs={
            "socket_timeout": connect_s, "socket_connect_timeout": connect_s})
        owned = {"connection_pool_class": _SentinelPool} if sentinel is redis.sentinel.Sentinel \
            else {}
        return asker.master_for(spec.service, db=spec.db, password=spec.password, **owned,
                                **timeouts)
    return plain.from_url(url, **timeouts)


class RedisStore:
    """Partition snapshots, watermarks, epochs and dead letters of one cluster."""

    def __init__(self, client: redis.Redis, cluster: str, *, wait_replicas: int = 0,
                 wait_timeout_ms: int = 1000) -> None:
        self.client = client
        self.keys = Keys(cluster)
        # Claims and flushes count once this many replicas hold them (see _replicated).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._flush = client.register_script(_FLUSH_LUA)
        self._claim = client.register_script(_CLAIM_LUA)

    # -- cluster metadata --------------------------------------------------
    def ensure_cluster(self, partitions: int, producer_id_ttl_s: int | None = None) -> int:
        """Create the cluster with ``partitions`` (and the producer-id window) or
        check it matches; returns P.

        Raises ConfigError when the cluster exists with another partition count
        (hashing keys over the wrong P would route them to the wrong streams) or
        another producer-id window (replicas that expire ids at different times
        would disagree on which retried batches to apply).
        """
        meta = self.keys.meta
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hsetnx(meta, "partitions", partitions)
            pipe.hsetnx(meta, "created_at", f"{time.time():.3f}")
            if producer_id_ttl_s is not None:
                pipe.hsetnx(meta, "producer_id_ttl_s", producer_id_ttl_s)
            pipe.hmget(meta, ["partitions", "producer_id_ttl_s"])
            stored, stored_ttl = pipe.execute()[-1]
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        stored = int(stored or partitions)
        if stored != partitions:
            raise ConfigError(
                f"cluster {self.keys.cluster!r} has {stored} partitions; this client is "
                f"configured with {partitions} (set LIFTLINE_PARTITIONS={stored})"
            )
        if producer_id_ttl_s is not None and stored_ttl is not None \
                and int(stored_ttl) != producer_id_ttl_s:
            raise ConfigError(
                f"cluster {self.keys.cluster!r} expires producer ids after {int(stored_ttl)} s; "
                f"this client is configured with {producer_id_ttl_s} s "
                f"(set LIFTLINE_PRODUCER_ID_TTL_S={int(stored_ttl)})"
            )
        return stored

    def cluster_partitions(self) -> int | None:
        try:
            raw = self.client.hget(self.keys.meta, "partitions")
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        return None if raw is None else int(raw)

    # -- ownership -----------------------------------------------------------
    def claim(self, partition: int, owner: str) -> tuple[int, int]:
        """Take ``partition`` for ``owner``: (new epoch, flushed offset).

        After this, flushes under any older epoch are refused, so the returned
        offset is the last one an earlier owner wrote.
        """
        try:
            epoch, offset = self._claim(keys=[self.keys.state(partition)], args=[owner])
            self.client.hset(self.keys.owners, str(partition), owner)
            self._replicated(f"claim of partition {partition}")
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        return int(epoch), int(offset)

    def _replicated(self, what: str) -> None:
        """Return once ``wait_replicas`` replicas hold what this client wrote so far.

        Redis replicates asynchronously: a failover can lose a write its primary
        acknowledged, and a stale primary can accept writes for seconds before it
        is demoted (it has no replicas then). So a claim or flush that fewer
        replicas hold raises StoreUnavailable; the caller keeps what it would have
        written and tries again, which is safe as both are idempotent.
        """
        if self.wait_replicas <= 0:
            return
        got = int(self.client.wait(self.wait_replicas, self.wait_timeout_ms))
        if got < self.wait_replicas:
            raise StoreUnavailable(
                f"{what} reached {got} of {self.wait_replicas} Redis replica(s) within "
                f"{self.wait_timeout_ms} ms; not counted, to be written again")

    def _state_field(self, partitions: list[int], field: str) -> list[Any]:
        try:
            pipe = self.client.pipeline(transaction=False)
            for p in partitions:
                pipe.hget(self.keys.state(p), field)
            return list(pipe.execute())
        except redis.RedisError as exc:
            raise store_error(exc) from exc

    def epochs(self, partitions: list[int]) -> dict[int, int]:
        """The current epoch of each partition (0 if never claimed)."""
        values = self._state_field(partitions, "epoch")
        return {p: int(v or 0) for p, v in zip(partitions, values, strict=True)}

    def flushed_offsets(self, partitions: list[int]) -> dict[int, int]:
        """The flushed offset of each partition (-1 if never flushed)."""
        values = self._state_field(partitions, "offset")
        return {p: -1 if v is None else int(v) for p, v in zip(partitions, values, strict=True)}

    def state(self, partition: int) -> dict[str, str]:
        try:
            raw = self.client.hgetall(self.keys.state(partition))
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- snapshot ----------------------------------------------------------
    def load(self, partition: int
             ) -> tuple[dict[str, Entry], int, dict[str, int], dict[str, list[list[int]]]]:
        """(data, flushed offset, watermarks, gaps) of a partition; offset -1 if never
        flushed.

        The entries stay packed as Redis holds them (see :mod:`liftline.store.memory`):
        a key is decoded when a write or a read first needs it.
        """
        try:
            # One transaction: a snapshot consistent with its offset even while
            # the owner flushes.
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(self.keys.data(partition))
            pipe.hget(self.keys.state(partition), "offset")
            pipe.hgetall(self.keys.watermarks(partition))
            pipe.hgetall(self.keys.gaps(partition))
            raw_data, offset, wms, raw_gaps = pipe.execute()
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        data: dict[str, Entry] = {k.decode(): v for k, v in raw_data.items()}
        watermarks = {k.decode(): int(v) for k, v in wms.items()}
        gaps = {k.decode(): codec.unpack(v) for k, v in raw_gaps.items()}
        return data, (-1 if offset is None else int(offset)), watermarks, gaps

    def gaps(self, partitions: list[int]) -> dict[int, dict[str, list[list[int]]]]:
        """Per partition, the flushed gaps: producer id → its missing seq ranges."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for p in partitions:
                pipe.hgetall(self.keys.gaps(p))
            raw = pipe.execute()
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        return {p: {k.decode(): codec.unpack(v) for k, v in got.items()}
                for p, got in zip(partitions, raw, strict=True) if got}

    def read(self, key: str, partition: int) -> tuple[Any, int] | None:
        """The flushed value and version of ``key``, or None."""
        try:
            raw = self.client.hget(self.keys.data(partition), key)
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        if raw is None:
            return None
        value, version = codec.unpack(raw)
        return value, version

    def flush(self, batch: FlushBatch, epoch: int, previous: int | None = None) -> None:
        """Write one partition's changes atomically under ``epoch``.

        Raises Fenced when the partition has a newer epoch (another worker owns
        it now), or when ``previous`` (the offset this owner last flushed) is given
        and Redis holds less (a failover lost flushes it had counted), so the
        partition must be loaded again. More is fine: a flush that raised
        StoreUnavailable may have landed all the same.
        Raises StoreUnavailable when Redis cannot be reached. In every case
        nothing of the batch was written.
        """
        args: list[Any] = [
            epoch, batch.offset, len(batch.changed), len(batch.deleted),
            len(batch.watermarks), len(batch.dead), f"{time.time():.3f}",
            len(batch.expired), batch.horizon, len(batch.gaps),
            "" if previous is None else previous,
        ]
        for key, entry in batch.changed:
            args.append(key)
            args.append(pack_entry(entry))
        args.extend(batch.deleted)
        for producer, seq in batch.watermarks.items():
            args.append(producer)
            args.append(seq)
        args.extend(batch.expired)
        for letter in batch.dead:
            args.append(msgpack.packb(letter.to_dict(), use_bin_type=True))
        for producer, ranges in batch.gaps.items():
            args.append(producer)
            args.append(msgpack.packb(ranges) if ranges else b"")
        p = batch.partition
        keys = [self.keys.data(p), self.keys.state(p), self.keys.watermarks(p), self.keys.dead(p),
                self.keys.gaps(p)]
        try:
            ok, current = self._flush(keys=keys, args=args)
            if ok == 1:
                self._replicated(f"flush of partition {p}")
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        if ok == 2:
            raise Fenced(f"partition {p}: Redis holds offset {current}, behind {previous} "
                         "flushed by this owner (a failover lost flushes); loading it again")
        if not ok:
            raise Fenced(f"partition {p}: flush with epoch {epoch} refused, current is {current}")

    # -- dead letters ------------------------------------------------------
    def dead_letters(self, partitions: int, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-letter records over all partitions, newest first."""
        out: list[dict[str, Any]] = []
        try:
            for p in range(partitions):
                for entry_id, fields in self.client.xrevrange(self.keys.dead(p), count=limit):
                    record = codec.unpack(fields[b"r"])
                    record["id"] = entry_id.decode()
                    out.append(record)
        except redis.RedisError as exc:
            raise store_error(exc) from exc
        out.sort(key=lambda r: r.get("at", 0), reverse=True)
        return out[:limit]
