"""HandlerThreads: the job handler threads that keep their number when one is stuck."""

from __future__ import annotations

import threading

import pytest
from helpers import wait_until

from liftline.jobs.threadpool import HandlerThreads


def stuck_call(pool: HandlerThreads, release: threading.Event):
    """Submit a call that blocks until ``release``; return its future once it runs."""
    started = threading.Event()

    def block() -> str:
        started.set()
        release.wait(30)
        return "late"

    future = pool.submit(block)
    assert started.wait(10), "the blocking call did not start"
    return future


def test_results_and_errors_come_back_on_the_futures():
    pool = HandlerThreads(2)
    try:
        assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(10) == 5
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(10)
        futures = [pool.submit(lambda n=n: n * n) for n in range(100)]
        assert [f.result(10) for f in futures] == [n * n for n in range(100)]
    finally:
        pool.shutdown(wait=True)


def test_an_abandoned_thread_is_replaced_and_ends_when_its_call_returns():
    pool = HandlerThreads(1, name="replaced")
    release = threading.Event()
    try:
        stuck = stuck_call(pool, release)
        queued = pool.submit(lambda: "next")
        pool.abandon(stuck)
        # The one slot is free again although the stuck call still runs.
        assert queued.result(10) == "next"
        assert (pool.size, pool.abandoned) == (1, 1)
        assert not stuck.done()
        release.set()
        wait_until(lambda: pool.abandoned == 0, 10, message="the abandoned thread ends")
        assert pool.size == 1
        names = {t.name for t in threading.enumerate() if t.name.startswith("replaced")}
        assert names == {"replaced-2"}, names
        assert pool.submit(lambda: "again").result(10) == "again"
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_abandoning_a_call_that_has_not_started_cancels_it():
    pool = HandlerThreads(1)
    release = threading.Event()
    ran = []
    try:
        stuck = stuck_call(pool, release)
        queued = pool.submit(ran.append, "queued")
        pool.abandon(queued)
        assert queued.cancelled()
        release.set()
        assert stuck.result(10) == "late"
        assert pool.submit(lambda: "after").result(10) == "after"
        assert ran == [] and pool.abandoned == 0 and pool.size == 1
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_past_max_abandoned_the_pool_shrinks_then_grows_back():
    pool = HandlerThreads(1, max_abandoned=1)
    first, second = threading.Event(), threading.Event()
    try:
        a = stuck_call(pool, first)
        pool.abandon(a)  # replaced: 1 abandoned, within the limit
        b = stuck_call(pool, second)
        pool.abandon(b)  # not replaced: 2 abandoned > 1
        assert (pool.size, pool.abandoned) == (0, 2)
        waiting = pool.submit(lambda: "ran")
        assert not waiting.done()
        first.set()  # one stuck call returns: its thread makes way for a new one
        assert waiting.result(10) == "ran"
        assert pool.size == 1
    finally:
        first.set()
        second.set()
        pool.shutdown(wait=True)


def test_shutdown_cancels_queued_calls_and_refuses_new_ones():
    pool = HandlerThreads(1)
    release = threading.Event()
    stuck = stuck_call(pool, release)
    queued = [pool.submit(lambda: "never") for _ in range(5)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)
    release.set()
    assert stuck.result(10) == "late"
    wait_until(lambda: pool.size == 0, 10, message="the thread ends after shutdown")


def test_a_pool_needs_a_thread():
    with pytest.raises(ValueError):
        HandlerThreads(0)
