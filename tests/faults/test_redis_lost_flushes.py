"""Redis losing flushes it had acknowledged, under load: nothing acknowledged is lost.

Redis replicates asynchronously, and WAIT counts how many replicas hold a write,
not which: a failover may promote a replica that lacks flushes the workers
counted (the cluster Redis-failover test saw offsets go back under one epoch).
Here that loss is made exact on one real Redis: every partition's keys are
saved atomically, more writes are flushed (and the standbys prune them), then
the saved keys are put back in one transaction, as a promoted replica would have
them. A primary's next flush must then be refused rather than land on the hole,
and a standby promoted onto that state must load it again rather than flush only
the changes it kept; both reload and replay the stream, and the final state
holds every acknowledged write exactly once.
"""

from __future__ import annotations

import os
import signal

from helpers import wait_until
from history import History, SteadyLoad
from pipeline import redis_state, wait_flushed
from test_failover import fast, finish_and_check, more_writes, pid_of, pool, start_settled, table

from liftline import Producer, Settings
from liftline.store.keys import Keys

# The keys of a partition a flush writes (RedisStore.flush), in one snapshot.
PARTITION_KEYS = ("data", "state", "watermarks", "dead", "gaps")
__all__ = ["fast", "pool"]  # the fixtures of test_failover.py, used here too


def save(client, settings: Settings) -> dict[str, bytes | None]:
    """DUMP of every partition's keys, taken in one transaction (no flush between)."""
    keys = Keys(settings.cluster)
    names = [getattr(keys, kind)(p) for p in range(settings.partitions)
             for kind in PARTITION_KEYS]
    pipe = client.pipeline(transaction=True)
    for name in names:
        pipe.dump(name)
    return dict(zip(names, pipe.execute(), strict=True))


def put_back(client, saved: dict[str, bytes | None]) -> None:
    """The saved keys as they were, in one transaction: what a failover to a replica
    that lacked the later flushes leaves."""
    pipe = client.pipeline(transaction=True)
    for name, dumped in saved.items():
        pipe.delete(name)
        if dumped is not None:
            pipe.restore(name, 0, dumped)
    pipe.execute()


def offsets(client, settings: Settings) -> dict[int, int]:
    keys = Keys(settings.cluster)
    return {p: int(client.hget(keys.state(p), "offset") or -1)
            for p in range(settings.partitions)}


def test_flushes_redis_lost_are_written_again_by_primaries_and_promoted_standbys(
        fast, pool, redis_client):
    start_settled(pool, redis_client, fast, 2)
    history = History()
    with Producer(fast) as producer, SteadyLoad(producer, history) as load:
        more_writes(load, 500)
        wait_flushed(redis_client, fast, list(history.tickets))
        saved, saved_at = save(redis_client, fast), offsets(redis_client, fast)
        # Keys written once, between the save and the loss: no later write of theirs
        # would heal the hole (the steady load rewrites its keys over and over).
        once = {f"once:{n}": n for n in range(200)}
        assert len(producer.submit_many([("set", k, v) for k, v in once.items()]).result(30)) \
            == len(once)
        more_writes(load, 500)
        wait_flushed(redis_client, fast, list(history.tickets))

        def standbys_pruned_past_the_save() -> bool:
            t = table(redis_client, fast)
            return all(h["flushed"] > saved_at[p] for p, row in t.items()
                       for h in row["holders"].values() if h["role"] == "standby")

        wait_until(standbys_pruned_past_the_save, 10, message="standbys pruned past the save")
        put_back(redis_client, saved)
        assert offsets(redis_client, fast) == saved_at
        victim = table(redis_client, fast)[0]["primary"]
        os.kill(pid_of(redis_client, fast, victim), signal.SIGKILL)
        more_writes(load, 1500)
        finish_and_check(load, history, redis_client, fast)
    state = redis_state(redis_client, fast)
    assert {k: state.get(k) for k in once} == once
    survivor = next(w for w in pool.started if w.proc.poll() is None)
    log = survivor.log_path.read_text(errors="replace")
    # Both paths ran: its own primaries' flushes refused, the victim's standbys reloaded.
    assert "a failover lost flushes" in log, survivor.log()
    assert "loading it again to lead it" in log, survivor.log()
