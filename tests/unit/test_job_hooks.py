"""liftline.jobs.hooks: hooks are called in order, a failing hook changes nothing,
and on_failure may only give up or move a retry (never add one)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftline.app import App, JobSpec
from liftline.errors import ConfigError
from liftline.jobs.hooks import Hooks, JobHook
from liftline.jobs.outcomes import Dead, Finished, Retry, Succeed, decide
from liftline.jobs.spec import Job, JobContext


def ctx(attempt: int = 1) -> JobContext:
    return JobContext("id-1", "work", attempt, None, 0.0)


class Recorder(JobHook):
    def __init__(self, name: str, events: list[tuple[str, str]]) -> None:
        self.name, self.events = name, events

    def before_job(self, ctx: JobContext) -> None:
        self.events.append((self.name, "before"))

    def after_job(self, ctx: JobContext, outcome: Any) -> None:
        self.events.append((self.name, type(outcome).__name__))

    def on_dead(self, ctx: JobContext, dead: Dead) -> None:
        self.events.append((self.name, "dead"))


class Broken(JobHook):
    def before_job(self, ctx: JobContext) -> None:
        raise RuntimeError("before")

    def on_timeout(self, ctx: JobContext) -> None:
        raise RuntimeError("timeout")

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Retry | Dead | None:
        raise RuntimeError("failure")

    def on_retry(self, ctx: JobContext, retry: Retry) -> None:
        raise RuntimeError("retry")

    def after_job(self, ctx: JobContext, outcome: Any) -> None:
        raise RuntimeError("after")

    def on_dead(self, ctx: JobContext, dead: Dead) -> None:
        raise RuntimeError("dead")


RETRY = Retry(2, 1.0, False, "ValueError: x", "tb")
DEAD = Dead("failed after 3 attempt(s): ValueError: x", 3, "tb", "ValueError: x")


def test_hooks_run_in_the_order_added_and_a_failing_one_stops_none(caplog):
    events: list[tuple[str, str]] = []
    app = App()
    first = app.add_job_hook(Recorder("a", events))
    app.add_job_hook(Broken())
    app.add_job_hook(Recorder("b", events))
    assert app.job_hooks[0] is first
    hooks = Hooks(app.job_hooks)
    with caplog.at_level(logging.ERROR, logger="liftline.jobs.hooks"):
        hooks.before_job(ctx())
        hooks.on_timeout(ctx())
        assert hooks.on_failure(ctx(), RETRY) == RETRY
        hooks.on_retry(ctx(), RETRY)
        hooks.after_job(ctx(), Succeed(1))
        hooks.on_dead(ctx(), DEAD)
    assert events == [("a", "before"), ("b", "before"), ("a", "Succeed"), ("b", "Succeed"),
                      ("a", "dead"), ("b", "dead")]
    failures = [r.getMessage() for r in caplog.records]
    assert len(failures) == 6
    for method in ("before_job", "on_timeout", "on_failure", "on_retry", "after_job", "on_dead"):
        assert sum(f"failed in {method}" in m for m in failures) == 1, failures


def test_a_hook_may_be_any_object_with_some_of_the_methods():
    seen: list[int] = []

    class JustBefore:
        def before_job(self, ctx: JobContext) -> None:
            seen.append(ctx.attempt)

    hooks = Hooks([JustBefore(), JobHook()])
    hooks.before_job(ctx(4))
    hooks.after_job(ctx(4), Succeed(None))
    assert hooks.on_failure(ctx(4), DEAD) is DEAD
    assert seen == [4]


def test_registering_a_hook_class_instead_of_an_instance_is_refused():
    with pytest.raises(ConfigError, match="instance"):
        App().add_job_hook(Recorder)
    assert not App().job_hooks  # apps do not share hooks


class Patient(JobHook):
    """Waits longer before each retry."""

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Retry | Dead | None:
        return outcome.after(outcome.delay * 10) if isinstance(outcome, Retry) else None


class NoRetryForKeyErrors(JobHook):
    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Retry | Dead | None:
        if isinstance(outcome, Retry) and isinstance(outcome.cause, KeyError):
            return outcome.give_up(f"permanent: {outcome.error}")
        return None


class Greedy(JobHook):
    """Tries to retry a job the policy sent dead, and answers nonsense otherwise."""

    def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Any:
        if isinstance(outcome, Dead):
            return Retry(ctx.attempt + 1, 0.0, False, outcome.error or "")
        return "again!"


def test_on_failure_answers_chain_and_are_checked(caplog):
    hooks = Hooks([Patient(), NoRetryForKeyErrors(), Greedy()])
    spec = JobSpec("work", lambda ctx: None, retries=3, backoff=(1.0, 1.0))
    job = Job("id-1", "work", {}, None, 1)

    def failed(error: BaseException) -> Retry | Dead:
        policy = decide(Finished(job, spec, False, error=error), lambda attempt: 0.5)
        assert not isinstance(policy, Succeed)
        return hooks.on_failure(ctx(1), policy)

    with caplog.at_level(logging.ERROR, logger="liftline.jobs.hooks"):
        later = failed(ValueError("v"))
        assert isinstance(later, Retry)
        assert (later.attempt, later.delay, later.in_place, later.error) == \
            (2, 5.0, False, "ValueError: v")
        dead = failed(KeyError("k"))
        assert isinstance(dead, Dead)
        assert (dead.reason, dead.attempts, dead.error) == \
            ("permanent: KeyError: 'k'", 1, "KeyError: 'k'")
        assert "KeyError: 'k'" in dead.traceback
    assert len(caplog.records) == 2  # Greedy refused both times
    assert all("only outcome.give_up()" in r.getMessage() for r in caplog.records)


@given(st.integers(0, 8), st.lists(st.sampled_from(["keep", "later", "sooner", "give_up",
                                                     "retry_anyway", "junk", "raise"]),
                                   max_size=4), st.booleans())
def test_no_hook_makes_a_job_retry_more_than_its_spec_allows(retries, answers, keyed):
    class Chosen(JobHook):
        def __init__(self, answer: str) -> None:
            self.answer = answer

        def on_failure(self, ctx: JobContext, outcome: Retry | Dead) -> Any:
            if self.answer == "raise":
                raise ValueError("hook bug")
            if self.answer == "retry_anyway":
                return Retry(ctx.attempt + 1, 0.1, keyed, "x")
            if self.answer == "junk":
                return 42
            if isinstance(outcome, Retry):
                return {"keep": None, "later": outcome.after(outcome.delay + 5),
                        "sooner": outcome.after(0.0), "give_up": outcome.give_up()}[self.answer]
            return None

    logging.getLogger("liftline.jobs.hooks").disabled = True
    try:
        hooks = Hooks([Chosen(a) for a in answers])
        spec = JobSpec("work", lambda ctx: None, retries=retries)
        current, retried = Job("id-1", "work", {}, "k" if keyed else None, 1), 0
        while True:
            policy = decide(Finished(current, spec, keyed, error=OSError("down")),
                            lambda attempt: 1.0)
            assert not isinstance(policy, Succeed)
            outcome = hooks.on_failure(ctx(current.attempt), policy)
            if isinstance(outcome, Dead):
                assert outcome.attempts == current.attempt
                assert outcome.error == "OSError: down"
                break
            assert outcome.attempt == current.attempt + 1 and outcome.in_place is keyed
            assert outcome.delay >= 0
            retried += 1
            current = Job(current.id, current.name, {}, current.key, outcome.attempt)
        assert retried <= retries
        if "give_up" not in answers:
            assert retried == retries
    finally:
        logging.getLogger("liftline.jobs.hooks").disabled = False
