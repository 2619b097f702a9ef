"""Many workers under steady load: failover, double failure, scaling, a paused primary.

Each test keeps the history of acknowledged writes and checks at the end that
every one is in the final state exactly once (see tests/history.py).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from helpers import wait_until
from history import History, SteadyLoad, check
from pipeline import Workers, memory_state, redis_state, wait_flushed

from liftline import Producer, Settings
from liftline.cluster.registry import current_holders, live_members, owners_of
from liftline.partitioning import assign
from liftline.store.keys import Keys


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Short heartbeats so that a dead member expires in 2 s."""
    return settings.replace(heartbeat_s=0.3, member_ttl_s=2.0, replicas=2)


@pytest.fixture
def pool(fast: Settings, redis_client, tmp_path):
    workers = Workers(fast, redis_client, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


def table(client, settings: Settings) -> dict[int, dict[str, Any]]:
    """Per partition: primary (from the owners hash, if live) and reported replicas."""
    keys = Keys(settings.cluster)
    members = live_members(client, keys)
    owners = owners_of(client, keys)
    out = {}
    for p in range(settings.partitions):
        holders = {m: r["partitions"][p] for m, r in members.items() if p in r["partitions"]}
        primary = owners.get(p)
        out[p] = {
            "primary": primary if primary in holders and holders[primary]["role"] == "primary"
            else None,
            "holders": holders,
        }
    return out


def pid_of(client, settings: Settings, member: str) -> int:
    return int(client.hget(Keys(settings.cluster).member(member), "pid"))


def settled(client, settings: Settings, n_workers: int) -> bool:
    """n_workers live members holding every partition as the (sticky) assignment
    of exactly these holdings says: a fixed point, the primary in the owners
    hash and in its report, the standbys in theirs, balance bounds kept."""
    members = live_members(client, Keys(settings.cluster))
    if len(members) != n_workers:
        return False
    owners = {int(k): v.decode() for k, v in client.hgetall(Keys(settings.cluster).owners).items()}
    holdings = current_holders(members, settings.partitions, owners)
    expected = assign(members, settings.partitions, settings.replicas, current=holdings)
    t = table(client, settings)
    return all(t[p]["primary"] == expected[p][0] == holdings[p][0]
               and set(holdings[p]) == set(expected[p])
               for p in range(settings.partitions))


def start_settled(pool: Workers, client, settings: Settings, n: int) -> None:
    """Start n workers and wait until they hold every partition as assigned."""
    for _ in range(n):
        pool.start()
    wait_until(lambda: settled(client, settings, n), 30, message=f"{n} workers settled")


def more_writes(load: SteadyLoad, n: int, timeout_s: float = 30) -> None:
    """Wait until ``n`` more writes were acknowledged."""
    start = load.count()
    wait_until(lambda: load.count() >= start + n, timeout_s, message=f"{n} more acked writes")


def finish_and_check(load: SteadyLoad, history: History, client, settings: Settings) -> None:
    load.stop()
    assert not load.errors, load.errors
    assert len(history.acked) > 1000, "too little load to prove anything"
    wait_flushed(client, settings, history.tickets, timeout_s=90)
    verdict = check(history, redis_state(client, settings))
    assert verdict.ok, (f"lost={sorted(verdict.lost)[:20]} dup={sorted(verdict.duplicated)[:20]}"
                        f" unexpected={sorted(verdict.unexpected)[:20]}")
    in_memory = check(history, memory_state(settings, [f"h:{i}" for i in range(64)]))
    assert in_memory.ok, in_memory


def test_sigkill_of_a_primary_fails_over_to_its_standby(fast, pool, redis_client):
    start_settled(pool, redis_client, fast, 3)
    history = History()
    with Producer(fast) as producer, SteadyLoad(producer, history) as load:
        # Settled again under load: a standby still moving (a partition with a third,
        # loading holder) would make the warm/cold count below a matter of timing.
        wait_until(lambda: load.count() > 500 and settled(redis_client, fast, 3), 30,
                   message="load running and 3 workers settled")
        before = table(redis_client, fast)
        victim = before[0]["primary"]
        victim_partitions = [p for p, row in before.items() if row["primary"] == victim]
        applied_at_kill = {p: before[p]["holders"][victim]["applied"] for p in victim_partitions}
        os.kill(pid_of(redis_client, fast, victim), signal.SIGKILL)
        killed_at = time.monotonic()

        def taken_over() -> bool:
            t = table(redis_client, fast)
            return all(t[p]["primary"] not in (None, victim)
                       and t[p]["holders"][t[p]["primary"]]["applied"] > applied_at_kill[p]
                       for p in victim_partitions)

        wait_until(taken_over, fast.member_ttl_s + 5, interval_s=0.05,
                   message="new primaries applying")
        failover_s = time.monotonic() - killed_at
        # Standbys took over: assignment promotes a warm standby; a worker acting
        # on a registry view a heartbeat old may still pick a cold replica (it
        # loads from Redis and replays, correct but slower), so require most.
        after = table(redis_client, fast)
        warm = [p for p in victim_partitions if after[p]["primary"] in before[p]["holders"]]
        assert len(warm) * 2 >= len(victim_partitions), (before, after)
        more_writes(load, 500)
        finish_and_check(load, history, redis_client, fast)
    print(f"failover in {failover_s:.2f}s (TTL {fast.member_ttl_s}s)")


def test_sigkill_of_primary_and_standby_recovers_from_redis_and_stream(fast, pool, redis_client):
    start_settled(pool, redis_client, fast, 3)
    history = History()
    with Producer(fast) as producer, SteadyLoad(producer, history) as load:
        wait_until(lambda: load.count() > 500, 30)
        holders = wait_until(
            lambda: [m for m in table(redis_client, fast)[0]["holders"]] if len(
                table(redis_client, fast)[0]["holders"]) == 2 else None,
            10, message="partition 0 on two workers")
        for member in holders:
            os.kill(pid_of(redis_client, fast, member), signal.SIGKILL)
        wait_until(lambda: settled(redis_client, fast, 1), fast.member_ttl_s + 15,
                   message="the last worker holding everything")
        more_writes(load, 500)
        finish_and_check(load, history, redis_client, fast)


def test_scale_1_to_4_to_1_under_load(fast, pool, redis_client):
    first = pool.start()
    history = History()
    with Producer(fast) as producer, SteadyLoad(producer, history) as load:
        wait_until(lambda: load.count() > 300, 30)
        joined = [pool.start() for _ in range(3)]
        wait_until(lambda: settled(redis_client, fast, 4), 30, message="4 workers settled")
        t = table(redis_client, fast)
        primaries = [row["primary"] for row in t.values()]
        assert max(primaries.count(m) for m in set(primaries)) <= 2  # ceil(8 / 4)
        more_writes(load, 300)
        for worker in joined:
            assert worker.terminate() == 0, worker.log()
        wait_until(lambda: settled(redis_client, fast, 1), 30, message="back to 1 worker")
        more_writes(load, 300)
        finish_and_check(load, history, redis_client, fast)
    t = table(redis_client, fast)
    assert {row["primary"] for row in t.values()} == {
        next(m for m in live_members(redis_client, Keys(fast.cluster)))}
    assert first.proc.poll() is None


def test_paused_primary_is_fenced_when_it_wakes(fast, pool, redis_client):
    start_settled(pool, redis_client, fast, 2)
    history = History()
    with Producer(fast) as producer, SteadyLoad(producer, history) as load:
        wait_until(lambda: load.count() > 500, 30)
        before = table(redis_client, fast)
        victim = before[0]["primary"]
        victim_proc = next(w for w in pool.started if w.pid == pid_of(redis_client, fast, victim))
        os.kill(victim_proc.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: table(redis_client, fast)[0]["primary"] not in (None, victim),
                       fast.member_ttl_s + 10, message="successor takes partition 0")
            more_writes(load, 500)
        finally:
            os.kill(victim_proc.pid, signal.SIGCONT)
        # It is fenced: its late flush is refused, or it sees the newer epoch
        # first (when it had nothing left to flush); either way it drops the
        # partitions it had led and cannot overwrite its successor.
        wait_until(lambda: "dropping partition" in victim_proc.log()
                   and ("flush with epoch" in victim_proc.log()
                        or "claimed by another worker" in victim_proc.log()), 20,
                   message="the paused worker to be fenced")
        wait_until(lambda: settled(redis_client, fast, 2), 30, message="2 workers settled again")
        more_writes(load, 500)
        finish_and_check(load, history, redis_client, fast)
