"""An App with job hooks, for worker processes (``--app hookapp:app``).

``Counting`` counts every hook call in the Redis hash ``ll-test:<cluster>:hooks``
so that a test can assert exact counts; ``Broken`` raises in every hook, which
must change nothing; ``GiveUpOnPermanent`` ends a job dead at its first
``PermanentError`` whatever its retries.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis

from liftline import App
from liftline.jobs.hooks import JobHook
from liftline.jobs.outcomes import Dead, Retry
from liftline.jobs.spec import JobContext

app = App("hooks")


class PermanentError(Exception):
    """Retrying will not help."""


def _counts_key() -> str:
    return f"ll-test:{os.environ['LIFTLINE_CLUSTER']}:hooks"


class Counting(JobHook):
    def __init__(self) -> None:
        self._redis: redis.Redis | None = None
        self._lock = threading.Lock()

    def _client(self) -> redis.Redis:
        # Made on first use (after a process pool's fork), once: handler threads that
        # each made one raced, and the client dropped by the loser closed, when
        # collected, the socket the other thread was reading (EBADF, a lost count).
        with self._lock:
            if self._redis is None:
                self._redis = redis.Redis.from_url(os.environ["LIFTLINE_REDIS_URL"])
            return self._redis

    def _count(self, *fields: str) -> None:
        pipe = self._client().pipeline(transaction=False)
        for field in fields:
            pipe.hincrby(_counts_key(), field, 1)
        pipe.execute()

    def before_job(self, ctx: JobContext) -> None:
        ctx.extra["began"] = time.monotonic()
        self._count("before", f"before:{ctx.name}")

    def on_timeout(self, ctx: JobContext) -> None:
        self._count("timeout")

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> None:
        self._count("failure")

    def on_retry(self, ctx: JobContext, retry: Retry) -> None:
        self._count("retry", f"retry:{ctx.name}")

    def after_job(self, ctx: JobContext, outcome: Any) -> None:
        # A job that times out may do so while its before_job hooks still run on
        # its thread (a slow machine): then whether they got this far is chance.
        extra = ["after:saw_before"] if "began" in ctx.extra and ctx.name != "slow" else []
        self._count("after", f"after:{type(outcome).__name__}", *extra)

    def on_dead(self, ctx: JobContext, dead: Dead) -> None:
        self._count("dead", f"dead:{ctx.name}")


class Broken(JobHook):
    def before_job(self, ctx: JobContext) -> None:
        raise RuntimeError("broken hook")

    def on_timeout(self, ctx: JobContext) -> None:
        raise RuntimeError("broken hook")

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> None:
        raise RuntimeError("broken hook")

    def on_retry(self, ctx: JobContext, retry: Retry) -> None:
        raise RuntimeError("broken hook")

    def after_job(self, ctx: JobContext, outcome: Any) -> None:
        raise RuntimeError("broken hook")

    def on_dead(self, ctx: JobContext, dead: Dead) -> None:
        raise RuntimeError("broken hook")


class GiveUpOnPermanent(JobHook):
    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Retry | Dead | None:
        # With --pool processes the cause is a JobError carrying the handler's as text.
        if isinstance(outcome, Retry) and (isinstance(outcome.cause, PermanentError)
                                           or "PermanentError: " in outcome.error):
            return outcome.give_up(f"permanent: {outcome.error}")
        return None


app.add_job_hook(Broken())
app.add_job_hook(GiveUpOnPermanent())
app.add_job_hook(Counting())


@app.job("ok", retries=0)
def ok(ctx, value):
    return value


@app.job("flaky", retries=3, backoff=(0.05, 0.1))
def flaky(ctx):
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


@app.job("doomed", retries=2, backoff=(0.05, 0.1))
def doomed(ctx):
    raise ValueError("never works")


@app.job("permanent", retries=5)
def permanent(ctx):
    raise PermanentError("no such account")


@app.job("slow", retries=0, timeout=0.3)
def slow(ctx):
    time.sleep(2)
    return "too late"
