"""The Redis store on a real Redis: atomic flush, fencing, consistent load, cluster P."""

from __future__ import annotations

from typing import Any

import pytest

from liftline.errors import ConfigError, Fenced, StoreUnavailable
from liftline.store.memory import PartitionStore, unpack_entry
from liftline.store.redis_store import RedisStore


def decoded(data: dict[str, Any]) -> dict[str, list[Any]]:
    """Loaded entries stay packed until used: key → [value, version]."""
    return {k: list(unpack_entry(e)) for k, e in data.items()}

def _store_with(writes: list[list], offset: int) -> PartitionStore:
    store = PartitionStore(0)
    store.apply_batch(offset, "prod", 1, writes)
    return store


def test_flush_from_an_older_epoch_is_refused_and_writes_nothing(redis_client, cluster_name):
    rs = RedisStore(redis_client, cluster_name)
    old_epoch, _ = rs.claim(0, "old")
    rs.flush(_store_with([["set", "a", 1]], 0).take_flush(), old_epoch)
    new_epoch, flushed = rs.claim(0, "new")
    assert new_epoch == old_epoch + 1 and flushed == 0
    late = PartitionStore(0)
    late.load(*rs.load(0))
    late.apply_batch(1, "prod", 2, [["set", "a", 99], ["set", "b", 2]])
    with pytest.raises(Fenced):
        rs.flush(late.take_flush(), old_epoch)
    data, offset, watermarks, gaps = rs.load(0)
    assert decoded(data) == {"a": [1, 1]} and offset == 0 and watermarks == {"prod": 1}
    assert gaps == {}
    # The successor's flush goes through.
    rs.flush(_store_with([["set", "a", 5]], 1).take_flush(), new_epoch)
    assert decoded(rs.load(0)[0])["a"] == [5, 1]


def test_flush_writes_keys_deletes_watermarks_and_dead_letters_together(redis_client,
                                                                         cluster_name):
    rs = RedisStore(redis_client, cluster_name)
    epoch, _ = rs.claim(3, "me")
    store = PartitionStore(3)
    writes = [["set", f"k{i}", i] for i in range(3000)] + [["incr", "k1", "x"]]
    store.apply_batch(0, "p", 1, writes)
    store.apply_batch(1, "p", 3002, [["delete", "k2", None]])
    rs.flush(store.take_flush(), epoch)
    data, offset, watermarks, _ = rs.load(3)
    assert offset == 1 and watermarks == {"p": 3002}
    assert len(data) == 2999 and "k2" not in data and decoded(data)["k1"] == [1, 1]
    letters = rs.dead_letters(4)
    assert len(letters) == 1 and letters[0]["partition"] == 3 and letters[0]["seq"] == 3001


def test_a_client_with_another_partition_count_is_refused(redis_client, cluster_name):
    rs = RedisStore(redis_client, cluster_name)
    assert rs.ensure_cluster(16) == 16
    assert rs.ensure_cluster(16) == 16
    with pytest.raises(ConfigError, match="has 16 partitions"):
        rs.ensure_cluster(8)


def test_a_claim_or_flush_no_replica_holds_is_not_counted(redis_client, cluster_name):
    # The session's Redis has no replica: what a stale primary cut off from its
    # replicas is. A store that needs one replica refuses to count either write.
    rs = RedisStore(redis_client, cluster_name, wait_replicas=1, wait_timeout_ms=50)
    with pytest.raises(StoreUnavailable, match="0 of 1 Redis replica"):
        rs.claim(0, "w1")
    epoch = RedisStore(redis_client, cluster_name).claim(0, "w1")[0]
    store = _store_with([["set", "a", 1]], 0)
    batch = store.take_flush()
    with pytest.raises(StoreUnavailable, match="flush of partition 0 reached 0 of 1"):
        rs.flush(batch, epoch)
    # What the worker does then: the changes go back and are flushed again later.
    store.restore_unflushed(batch)
    assert decoded(dict(store.take_flush().changed)) == {"a": [1, 1]}


def test_gaps_flush_with_their_partition_load_back_and_clear_when_filled(redis_client,
                                                                        cluster_name):
    rs = RedisStore(redis_client, cluster_name)
    epoch, _ = rs.claim(1, "me")
    store = PartitionStore(1)
    store.apply_batch(0, "prod", 1, [["incr", "n", 1]])
    store.apply_batch(1, "prod", 5, [["incr", "n", 1]])  # seqs 2-4 missing
    store.apply_batch(2, "other", 3, [["incr", "n", 1]])  # a new producer past seq 1
    rs.flush(store.take_flush(), epoch)
    assert rs.gaps([0, 1]) == {1: {"prod": [[2, 4]], "other": [[1, 2]]}}
    letters = [r for r in rs.dead_letters(2) if r["op"] == "gap"]
    assert sorted((r["producer_id"], r["seq"]) for r in letters) == [("other", 1), ("prod", 2)]
    replica = PartitionStore(1)
    replica.load(*rs.load(1))
    assert replica.missing == 5
    replica.apply_batch(3, "prod", 2, [["incr", "n", 1]] * 3)  # the late copy
    assert replica.get("n") == (6, 6)
    rs.flush(replica.take_flush(), epoch)
    assert rs.gaps([1]) == {1: {"other": [[1, 2]]}}


def test_a_flush_on_a_state_redis_lost_flushes_of_is_refused(redis_client, cluster_name):
    # What a failover to a replica that lacked counted flushes leaves: Redis' offset
    # behind what the owner flushed. The owner's next changes must not land on it.
    rs = RedisStore(redis_client, cluster_name)
    epoch, offset = rs.claim(0, "w1")
    assert offset == -1
    rs.flush(_store_with([["set", "a", 1]], 5).take_flush(), epoch, previous=-1)
    rs.flush(_store_with([["set", "b", 2]], 9).take_flush(), epoch, previous=5)
    redis_client.hset(rs.keys.state(0), "offset", 5)  # the flush at 9 lost
    with pytest.raises(Fenced, match="Redis holds offset 5, behind 9 .*a failover lost flushes"):
        rs.flush(_store_with([["set", "c", 3]], 12).take_flush(), epoch, previous=9)
    assert "c" not in decoded(rs.load(0)[0])
    # Redis ahead of the owner is a flush that raised yet landed (its WAIT fell short).
    rs.flush(_store_with([["set", "c", 3]], 12).take_flush(), epoch, previous=3)
    assert rs.load(0)[1] == 12
