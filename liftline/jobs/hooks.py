"""Job hooks: add metrics, retry tweaks or bookkeeping to the job runner without
editing it (what dramatiq calls middleware).

Subclass :class:`JobHook`, override what you need and register an instance with
``app.add_job_hook(hook)``; hooks run in the order they were added. An exception
raised by a hook is logged and ignored: it never fails, loses or repeats a job,
and never stops the runner.

Where they run: :meth:`JobHook.before_job` on the handler's thread (several at
once: guard shared state with a lock), or on the runner's thread with
``--pool processes``; every other method on the runner's thread, which also
keeps the broker connection alive: a hook must not block there (no network
round trips; hand slow work to a thread or queue of your own).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from liftline.jobs.outcomes import Dead, Outcome, Retry, adjusted
from liftline.jobs.spec import JobContext

log = logging.getLogger(__name__)


class JobHook:
    """The hook points of the job runner; each method here does nothing."""

    def before_job(self, ctx: JobContext) -> None:
        """A job is about to run (``ctx.deadline`` is set if it has a timeout, and
        the time spent here counts toward it, with threads: a job may time out, and
        the other methods be called, while this still runs). ``ctx.extra`` is this
        attempt's: what is put there here is seen again by the other methods."""

    def on_timeout(self, ctx: JobContext) -> None:
        """The job overran its timeout; its handler was abandoned (a thread) or
        killed (a process). Its failure follows, through :meth:`on_failure`."""

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Retry | Dead | None:
        """The attempt failed (``outcome.cause`` is the exception: with processes, a
        ``JobError`` with the handler's as text) and the policy chose ``outcome``.
        Return None to keep it, ``outcome.give_up(reason)`` to end the job dead now,
        or, for a retry, ``outcome.after(seconds)`` to change its delay. A hook
        cannot add retries beyond the job's ``retries``."""
        return None

    def on_retry(self, ctx: JobContext, retry: Retry) -> None:
        """The retry is recorded and scheduled: attempt ``retry.attempt`` runs in
        ``retry.delay`` seconds."""

    def after_job(self, ctx: JobContext, outcome: Outcome) -> None:
        """The attempt's outcome (succeeded, retried or dead) is carried out: the
        result stored, the retry scheduled, or the dead letter published."""

    def on_dead(self, ctx: JobContext, dead: Dead) -> None:
        """A dead letter was recorded and parked on this worker: a job out of
        retries, one that could not run (no handler, bad arguments, undecodable:
        name "?"), or one that crashed its workers past the delivery limit. Called
        once per letter on whichever worker takes it from the dead-letter intake
        (again only if that worker dies before it acks the letter)."""


class Hooks:
    """Calls registered hooks for the runner, each in a guard; hooks may also be
    any objects with some of :class:`JobHook`'s methods."""

    def __init__(self, hooks: Iterable[Any] = ()) -> None:
        self.hooks = list(hooks)

    def _each(self, method: str, *args: Any) -> None:
        for hook in self.hooks:
            fn = getattr(hook, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:
                log.exception("job hook %r failed in %s; ignored", hook, method)

    def before_job(self, ctx: JobContext) -> None:
        self._each("before_job", ctx)

    def on_timeout(self, ctx: JobContext) -> None:
        self._each("on_timeout", ctx)

    def on_retry(self, ctx: JobContext, retry: Retry) -> None:
        self._each("on_retry", ctx, retry)

    def after_job(self, ctx: JobContext, outcome: Outcome) -> None:
        self._each("after_job", ctx, outcome)

    def on_dead(self, ctx: JobContext, dead: Dead) -> None:
        self._each("on_dead", ctx, dead)

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Retry | Dead:
        """The outcome of a failed attempt after every hook had its say: each sees
        the answer of the hooks before it; an answer that is not allowed (see
        :func:`liftline.jobs.outcomes.adjusted`) is logged and ignored."""
        for hook in self.hooks:
            fn = getattr(hook, "on_failure", None)
            if fn is None:
                continue
            try:
                proposed = fn(ctx, outcome)
            except Exception:
                log.exception("job hook %r failed in on_failure; ignored", hook)
                continue
            if proposed is None or proposed is outcome:
                continue
            accepted = adjusted(outcome, proposed, ctx.attempt)
            if accepted is None:
                log.error("job hook %r answered %r to a failed attempt of job %s: only "
                          "outcome.give_up() or, for a retry, outcome.after(seconds) may "
                          "change it; ignored", hook, proposed, ctx.job_id)
                continue
            outcome = accepted
        return outcome
