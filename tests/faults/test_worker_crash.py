"""A worker SIGKILLed under load loses nothing acknowledged and applies nothing twice."""

from __future__ import annotations

import threading

from helpers import wait_until
from pipeline import Model, memory_state, mixed_load, redis_state, wait_flushed

from liftline import Producer
from liftline.store.keys import Keys

# Enough that the load outlasts the first flush (the Producer got faster).
WRITES_PER_THREAD = 50_000


def test_sigkill_mid_load_then_restart_gives_the_same_fold(settings, workers, redis_client):
    first = workers.start()
    model, lock, futures = Model(), threading.Lock(), []
    keys = Keys(settings.cluster)

    def flushed_offsets() -> int:
        return sum(int(redis_client.hget(keys.state(p), "offset") or -1) + 1
                   for p in range(settings.partitions))

    with Producer(settings) as producer:
        threads = [threading.Thread(target=mixed_load,
                                    args=(producer, n, WRITES_PER_THREAD, model, lock, futures))
                   for n in range(4)]
        for t in threads:
            t.start()
        # Kill once the worker has flushed but the load is still running.
        wait_until(lambda: flushed_offsets() > 0, 60, interval_s=0.01, message="first flushes")
        first.kill()
        assert first.proc.returncode == -9
        still_running = any(t.is_alive() for t in threads)
        second = workers.start()
        for t in threads:
            t.join(180)
    assert still_running, "the load ended before the kill; the test proved nothing"
    assert len(futures) == 4 * WRITES_PER_THREAD
    wait_flushed(redis_client, settings, [f.ticket for f in futures])
    assert redis_state(redis_client, settings) == model.values
    assert memory_state(settings, sorted(model.values)) == model.values
    assert second.terminate() == 0
