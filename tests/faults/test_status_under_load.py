"""`liftline status --json` while the cluster is busy and a worker dies.

Before the status rewrite every call failed under any write load: reading the
stream bounds cancelled a stream consumer, pika rejected what it had buffered,
and the stream closed the connection (540 NOT_IMPLEMENTED).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import run_liftline, wait_until
from pipeline import REPO, PacedLoad, Workers

from liftline import Producer, Settings
from liftline.cluster.registry import live_members
from liftline.store.keys import Keys

CALLS = 20
TARGET_RATE = 20_000  # writes/s offered; the test reports what was achieved


def status_json(settings: Settings) -> tuple[int, dict[str, Any] | None, str, float]:
    env = settings.child_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    started = time.monotonic()
    proc = run_liftline(["status", "--json"], env=env, cwd=REPO)
    took = time.monotonic() - started
    try:
        answer = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        answer = None
    return proc.returncode, answer, proc.stdout + proc.stderr, took


def primaries(answer: dict[str, Any]) -> dict[int, str | None]:
    return {row["partition"]: row["primary"] for row in answer["partition_state"]}


@pytest.mark.timeout(280)
def test_status_answers_every_time_under_load_and_shows_a_failover(
        settings: Settings, redis_client, tmp_path: Path) -> None:
    fast = settings.replace(heartbeat_s=0.3, member_ttl_s=2.0, replicas=2, linger_ms=5)
    pool = Workers(fast, redis_client, tmp_path)
    try:
        for _ in range(3):
            pool.start()
        keys = Keys(fast.cluster)
        wait_until(lambda: len(live_members(redis_client, keys)) == 3, 30)
        answers: list[dict[str, Any]] = []
        durations: list[float] = []
        victim: str | None = None
        with Producer(fast) as producer, PacedLoad(producer, TARGET_RATE) as load:
            wait_until(lambda: load.acked >= 20_000, 60, message="load under way")
            for call in range(CALLS):
                rc, answer, output, took = status_json(fast)
                assert rc == 0, f"call {call}: exit {rc}\n{output[-3000:]}"
                assert "Traceback" not in output
                assert answer is not None and answer["unreachable"] == [], output[-3000:]
                assert len(answer["partition_state"]) == fast.partitions
                assert all(row["stream_tail"] >= 0 for row in answer["partition_state"]), \
                    "every stream has entries under this load"
                answers.append(answer)
                durations.append(took)
                if call == 5:
                    held = primaries(answer)
                    victim = next(m for m in held.values() if m)
                    pid = int(redis_client.hget(keys.member(victim), "pid"))
                    os.kill(pid, signal.SIGKILL)
            assert not load.errors, load.errors
        assert victim is not None
        before = primaries(answers[5])
        lost = [p for p, m in before.items() if m == victim]
        assert lost
        # Some answer after the kill shows the failover complete: the member gone,
        # and each of its partitions led by another live member.
        after = [a for a in answers[6:]
                 if victim not in {m["id"] for m in a["members"]}
                 and all(primaries(a)[p] not in (None, victim) for p in lost)]
        assert after, "no status answer showed the failover: " + json.dumps(
            [primaries(a) for a in answers[6:]])[:2000]
        durations.sort()
        print(f"\nstatus --json under load ({load.achieved():,.0f} writes/s achieved, target "
              f"{TARGET_RATE:,}): {CALLS} calls, median {durations[len(durations) // 2]:.2f}s,"
              f" max {durations[-1]:.2f}s")
    finally:
        pool.stop_all()
