"""Ownership against a fake worker and a fake Redis: takes, handovers, fences, flushes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from ownership_fakes import FakeDurable, Node, Streams

from liftline.settings import Settings
from liftline.workers.plan import PRIMARY, STANDBY


@pytest.fixture
def durable() -> FakeDurable:
    return FakeDurable()


@pytest.fixture
def streams() -> Streams:
    return Streams()


@pytest.fixture
def registry() -> dict:
    return {}


def _node(member_id, durable, registry, streams, partitions=2, replicas=2) -> Node:
    return Node(member_id, Settings(partitions=partitions, replicas=replicas),
                durable, registry, streams)


def test_a_lone_worker_leads_everything_and_flushes_the_fold_of_the_stream(
        durable, registry, streams):
    a = _node("a", durable, registry, streams)
    a.turn()
    assert a.roles() == {0: PRIMARY, 1: PRIMARY}
    assert durable.owner == {0: "a", 1: "a"} and dict(durable.epoch) == {0: 1, 1: 1}
    for n in range(5):
        streams.publish(0, ["incr", "k", 1], ["set", f"s{n}", n])
    streams.publish(1, ["set", "x", "y"])
    a.host.pump()
    a.ownership.flush_all()
    assert durable.values(0) == streams.fold(0) == {"k": 5} | {f"s{n}": n for n in range(5)}
    assert durable.values(1) == {"x": "y"}
    assert durable.offset == {0: 4, 1: 0}
    a.ownership.flush_all()
    assert len(durable.accepted) == 2  # nothing new: no second write


def test_a_fenced_flush_drops_the_partition_and_writes_nothing(durable, registry, streams):
    a = _node("a", durable, registry, streams)
    a.turn()
    streams.publish(0, ["set", "k", "first"])
    a.host.pump()
    a.ownership.flush_all()
    durable.claim(0, "b")  # another worker took partition 0 meanwhile
    streams.publish(0, ["set", "k", "second"])
    streams.publish(1, ["set", "j", 1])
    a.host.pump()
    a.ownership.flush_all()
    assert 0 not in a.ownership.owned and 0 not in a.host.consuming
    assert durable.values(0) == {"k": "first"}  # the stale primary overwrote nothing
    assert durable.values(1) == {"j": 1}  # its other partition still flushes
    assert 0 not in a.ownership.report()


def test_a_superseded_primary_with_nothing_to_flush_learns_it_at_the_next_heartbeat(
        durable, registry, streams):
    a = _node("a", durable, registry, streams, partitions=1)
    a.turn()
    b = _node("b", durable, registry, streams, partitions=1)
    b.turn()
    assert (a.roles(), b.roles()) == ({0: PRIMARY}, {0: STANDBY})
    b.ownership.promote(0)  # on a view a has not seen yet
    a.turn()
    # a dropped the partition it lost and came back as b's standby, from Redis.
    assert a.roles() == {0: STANDBY} and a.ownership.owned[0].epoch == 0
    assert a.ownership.report()[0]["role"] == STANDBY


def test_a_promoted_standby_waits_for_the_previous_primarys_offset_before_flushing(
        durable, registry, streams):
    a = _node("a", durable, registry, streams, partitions=1)
    a.turn()
    b = _node("b", durable, registry, streams, partitions=1)
    b.turn()
    assert (a.roles(), b.roles()) == ({0: PRIMARY}, {0: STANDBY})
    for n in range(10):
        streams.publish(0, ["incr", "n", 1], ["set", f"k{n}", n])
    a.host.pump()
    b.host.pump(upto=4)  # b lags behind its primary
    a.ownership.flush_all()
    assert durable.offset[0] == 9
    a.crash()
    b.turn()
    assert b.roles() == {0: PRIMARY} and durable.owner[0] == "b"
    assert b.ownership.owned[0].store.applied_offset == 4
    streams.publish(0, ["set", "late", True])  # offset 10: b has not applied it yet
    b.ownership.flush_all()
    flushed_by_a = {"n": 10} | {f"k{n}": n for n in range(10)}
    assert durable.offset[0] == 9 and durable.values(0) == flushed_by_a
    assert [off for _, off, _ in durable.accepted] == [9]  # b wrote nothing at offset 4
    b.host.pump(upto=9)
    b.ownership.flush_all()
    assert [off for _, off, _ in durable.accepted] == [9, 9]
    b.host.pump()
    b.ownership.flush_all()
    assert durable.values(0) == streams.fold(0) and durable.offset[0] == 10
    offsets = [off for _, off, _ in durable.accepted]
    assert offsets == sorted(offsets)  # Redis never moved backwards


def test_handovers_as_workers_join_keep_every_write(durable, registry, streams):
    a = _node("a", durable, registry, streams, partitions=8, replicas=1)
    a.turn()
    for p in range(8):
        streams.publish(p, ["incr", "n", p + 1], ["set", f"p{p}", "v"])
    a.host.pump()
    nodes = [a]
    for name in ("b", "c"):
        nodes.append(_node(name, durable, registry, streams, partitions=8, replicas=1))
        for _ in range(4):  # a few heartbeats each, in turn
            for node in nodes:
                node.turn()
                node.host.pump()
    for p in range(8):
        leaders = [n.id for n in nodes if n.roles().get(p) == PRIMARY]
        assert len(leaders) == 1, (p, leaders)
        leader = next(n for n in nodes if n.id == leaders[0])
        assert leader.values(p) == streams.fold(p)
    counts = sorted(len(n.roles()) for n in nodes)
    assert counts == [2, 3, 3]  # ceil(8 / 3) at most, one replica each


def test_release_flushes_a_primarys_changes_for_the_next_owner(durable, registry, streams):
    a = _node("a", durable, registry, streams, partitions=4, replicas=1)
    a.turn()
    for p in range(4):
        streams.publish(p, ["set", "owner", "a"], ["incr", "n", 7])
    a.host.pump()  # applied, not flushed
    assert not durable.accepted
    b = _node("b", durable, registry, streams, partitions=4, replicas=1)
    a.turn()
    released = set(range(4)) - set(a.roles())
    assert len(released) == 2 and released.isdisjoint(a.host.consuming)
    for p in released:
        assert durable.values(p) == {"owner": "a", "n": 7}
    b.turn()
    assert set(b.roles()) == released
    for p in released:
        assert b.values(p) == streams.fold(p)


def test_a_flush_that_cannot_reach_redis_keeps_its_changes_for_the_next(
        durable, registry, streams):
    a = _node("a", durable, registry, streams, partitions=1)
    a.turn()
    streams.publish(0, ["set", "k", 1], ["delete", "gone", None])
    a.host.pump()
    durable.down = True
    a.ownership.flush_all()  # postponed, not raised
    assert not durable.accepted and a.ownership.owned[0].flushed_offset == -1
    durable.down = False
    a.ownership.flush_all()
    assert durable.values(0) == {"k": 1} and durable.offset[0] == 0


def test_a_flush_onto_state_redis_lost_reloads_the_partition_and_loses_nothing(
        durable, registry, streams):
    # Redis replicates asynchronously: a failover can promote a replica that lacks a
    # flush WAIT counted. The owner must not build on that hole; it loads again.
    a = _node("a", durable, registry, streams, partitions=1)
    a.turn()
    streams.publish(0, ["set", "k", 1], ["incr", "n", 1])
    a.host.pump()
    a.ownership.flush_all()
    before = durable.snapshot(0)
    streams.publish(0, ["set", "k", 2], ["incr", "n", 1])
    a.host.pump()
    a.ownership.flush_all()
    assert durable.offset[0] == 1
    durable.lose_flushes(0, before)
    streams.publish(0, ["set", "j", 3], ["incr", "n", 1])
    a.host.pump()
    a.ownership.flush_all()
    assert 0 not in a.ownership.owned  # refused, not written over the hole
    assert durable.offset[0] == 0 and durable.values(0) == {"k": 1, "n": 1}
    a.turn()  # still the owner: claims and loads it again, then replays the stream
    a.host.pump()
    a.ownership.flush_all()
    assert durable.values(0) == streams.fold(0) == {"k": 2, "n": 3, "j": 3}
    assert durable.offset[0] == 2 and durable.epoch[0] == 2


def test_a_standby_promoted_onto_state_redis_lost_loads_it_again(durable, registry, streams):
    # The standby pruned the changes its primary flushed; Redis then lost some of those
    # flushes. Its own dirty set no longer covers what Redis misses: it must reload.
    a = _node("a", durable, registry, streams, partitions=1)
    a.turn()
    b = _node("b", durable, registry, streams, partitions=1)
    b.turn()
    streams.publish(0, ["set", "k", 1], ["incr", "n", 1])
    a.host.pump()
    a.ownership.flush_all()
    before = durable.snapshot(0)
    streams.publish(0, ["set", "gone", 1], ["incr", "n", 1])
    streams.publish(0, ["delete", "k", None])
    a.host.pump()
    a.ownership.flush_all()
    b.host.pump()
    b.turn()
    assert b.ownership.owned[0].flushed_offset == 2 and not b.ownership.owned[0].store.dirty
    durable.lose_flushes(0, before)
    b.turn()  # still a standby: what it pruned stays pruned, whatever Redis says now
    assert b.ownership.owned[0].flushed_offset == 2
    a.crash()
    b.turn()
    assert b.roles() == {0: PRIMARY} and b.ownership.owned[0].store.applied_offset == 0
    b.host.pump()
    b.ownership.flush_all()
    assert durable.values(0) == streams.fold(0) == {"n": 2, "gone": 1}
    assert durable.offset[0] == 2


def test_standbys_forget_the_changes_their_primary_flushed(durable, registry, streams):
    a = _node("a", durable, registry, streams, partitions=1)
    a.turn()
    b = _node("b", durable, registry, streams, partitions=1)
    b.turn()
    assert (a.roles(), b.roles()) == ({0: PRIMARY}, {0: STANDBY})
    for n in range(3):
        streams.publish(0, ["set", f"k{n}", n])
    a.host.pump()
    b.host.pump()
    standby = b.ownership.owned[0]
    assert set(standby.store.dirty) == {"k0", "k1", "k2"}
    a.ownership.flush_all()
    streams.publish(0, ["set", "k3", 3])
    b.host.pump()
    b.turn()
    assert set(standby.store.dirty) == {"k3"}  # only what a promotion would still flush
    assert standby.flushed_offset == 2


def test_ownership_and_the_plan_do_not_import_the_worker():
    root = Path(__file__).resolve().parents[2] / "liftline" / "workers"
    for name in ("ownership.py", "plan.py"):
        tree = ast.parse((root / name).read_text())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert not any(m.startswith("liftline.workers.partition_worker")
                       or m.startswith("liftline.workers.rpc") for m in imported), name
