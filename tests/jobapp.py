"""Jobs the tests run in real worker processes (``--app jobapp:app``).

Handlers report what happened to them in Redis lists under ``ll-test:`` so the
tests can assert on attempts, times and order.
"""

from __future__ import annotations

import os
import random
import signal
import time

import redis

from liftline import App

app = App("tests")
_redis: redis.Redis | None = None


def _r() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["LIFTLINE_REDIS_URL"])
    return _redis


@app.job("echo", retries=0)
def echo(ctx, value):
    return {"value": value, "attempt": ctx.attempt, "job_id": ctx.job_id}


@app.job("flaky", retries=3, backoff=(0.2, 1.0))
def flaky(ctx, log):
    _r().rpush(f"ll-test:{log}", f"{ctx.attempt}:{time.time()}")
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


@app.job("until_fixed", retries=2, backoff=(0.05, 0.1))
def until_fixed(ctx, flag):
    _r().rpush(f"ll-test:{flag}:runs", ctx.attempt)
    if not _r().exists(f"ll-test:{flag}"):
        raise ValueError("not fixed yet")
    return "fixed"


@app.job("slow", retries=0, timeout=0.5)
def slow(ctx):
    time.sleep(3)
    return "too late"


@app.job("stuck", retries=0, timeout=0.5)
def stuck(ctx, gate):
    """Hangs well past its timeout, until the test opens ``gate`` (at most 60 s)."""
    _r().rpush(f"ll-test:{gate}:began", ctx.job_id)
    _r().blpop([f"ll-test:{gate}"], timeout=60)
    return "too late"


@app.job("long", retries=0)
def long(ctx, marker, seconds):
    _r().rpush(f"ll-test:{marker}", f"{os.getpid()}:{ctx.attempt}")
    time.sleep(seconds)
    return os.getpid()


@app.job("tally", retries=2, backoff=(0.1, 0.5))
def tally(ctx, log, seconds):
    """Counts each run of this job id in the hash ``ll-test:<log>``, then sleeps."""
    _r().hincrby(f"ll-test:{log}", ctx.job_id, 1)
    time.sleep(seconds)
    return ctx.attempt


@app.job("suicide", retries=5)
def suicide(ctx):
    os.kill(os.getpid(), signal.SIGKILL)


@app.job("ordered", retries=0)
def ordered(ctx, group, n):
    time.sleep(random.random() / 1000)
    _r().rpush(f"ll-test:{group}", n)
    return n


@app.job("noop", retries=0)
def noop(ctx):
    return None


@app.job("whoami", retries=0)
def whoami(ctx):
    return os.getpid()


@app.job("cpu", retries=0)
def cpu(ctx, n):
    return sum(i * i for i in range(n))


@app.job("second_time", retries=1, backoff=(4.0, 4.0))
def second_time(ctx):
    """Fails its first attempt, then waits 2-4 s for its retry (long enough to be seen)."""
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails on purpose")
    return ctx.attempt
