"""liftline.jobs.outcomes: the job outcome policy, over many inputs and without servers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftline import codec
from liftline.app import JobSpec
from liftline.jobs.outcomes import (
    SUSPECT_HEADER,
    Admit,
    Dead,
    Finished,
    Reject,
    Retry,
    Succeed,
    ToSuspects,
    adjusted,
    dead_letter,
    decide,
    held_retry,
    on_delivery,
    to_start,
)
from liftline.jobs.spec import Job


def handler(ctx: Any, x: int = 0) -> int:
    return x


def spec(retries: int = 3, backoff: tuple[float, float] = (1.0, 60.0),
         timeout: float | None = None) -> JobSpec:
    return JobSpec("work", handler, retries, backoff, timeout)


def job(attempt: int = 1, key: str | None = None) -> Job:
    return Job("id-1", "work", {"x": 1}, key, attempt, 1000.0)


def fixed(seconds: float):
    """A deterministic stand-in for the spec's jittered delay."""
    return lambda attempt: seconds * attempt


retries_st = st.integers(min_value=0, max_value=12)
attempt_st = st.integers(min_value=1, max_value=20)
results_st = st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20) | \
    st.lists(st.integers(0, 9), max_size=5) | st.dictionaries(st.text(max_size=5), st.booleans())


# -- a handler that returned ----------------------------------------------------------
@given(retries_st, attempt_st, st.booleans(), st.booleans(), results_st)
def test_a_success_is_never_retried(retries, attempt, keyed, suspect, result):
    seen = Finished(job(attempt), spec(retries), keyed, suspect, result=result)
    assert decide(seen, fixed(1.0)) == Succeed(result)


def test_a_result_that_cannot_be_encoded_fails_the_attempt():
    outcome = decide(Finished(job(1), spec(1), False, result={1, 2}), fixed(0.5))
    assert isinstance(outcome, Retry)
    assert outcome.error.startswith("InvalidWrite: ")
    with pytest.raises(Exception) as raised:
        codec.pack({1, 2})
    assert outcome.error == f"InvalidWrite: {raised.value}"


# -- a handler that failed ------------------------------------------------------------
@given(retries_st, attempt_st, st.booleans(), st.booleans(), st.booleans())
def test_a_failure_is_retried_as_the_next_attempt_while_retries_last(retries, attempt, keyed,
                                                                    suspect, timed_out):
    seen = Finished(job(attempt), spec(retries, timeout=2.5), keyed, suspect,
                    error=ValueError("boom"), timed_out=timed_out)
    outcome = decide(seen, fixed(0.25))
    text = "TimeoutError: no result within 2.5s" if timed_out else "ValueError: boom"
    if attempt <= retries:
        assert outcome == Retry(attempt + 1, 0.25 * attempt, keyed, text, outcome.traceback)
        assert outcome.traceback.rstrip().endswith(text)
    else:
        assert outcome == Dead(f"failed after {attempt} attempt(s): {text}", attempt,
                               outcome.traceback, text)


@given(retries_st, st.booleans())
def test_a_job_that_always_fails_is_retried_exactly_retries_times_then_dead(retries, keyed):
    current, retried, attempts = job(1), 0, []
    while True:
        attempts.append(current.attempt)
        outcome = decide(Finished(current, spec(retries), keyed, error=OSError("down")))
        if isinstance(outcome, Dead):
            break
        assert isinstance(outcome, Retry) and outcome.in_place is keyed
        retried += 1
        current = Job(current.id, current.name, current.args, current.key, outcome.attempt)
    assert retried == retries
    assert attempts == list(range(1, retries + 2))
    assert outcome.attempts == retries + 1
    assert outcome.reason == f"failed after {retries + 1} attempt(s): OSError: down"


@given(st.floats(0, 30), st.floats(0, 100), st.integers(1, 70))
def test_the_default_delay_is_the_spec_backoff_with_jitter(first, cap_extra, attempt):
    cap = first + cap_extra
    outcome = decide(Finished(job(attempt), spec(100, (first, cap)), False, error=KeyError(1)))
    assert isinstance(outcome, Retry)
    # The exponent stops at 60: only a tiny first delay gets that far below its cap.
    ceiling = min(cap, first * 2 ** min(attempt - 1, 60))
    assert ceiling / 2 <= outcome.delay <= ceiling
    # The delay queue never holds it longer than asked (but holds at least the first step).
    assert outcome.step_ms <= max(50, outcome.delay * 1000)
    if outcome.delay >= 0.05:
        assert outcome.step_ms >= 0.8 * outcome.delay * 1000 - 1


@given(retries_st, attempt_st, st.booleans(), st.booleans(), st.booleans())
def test_a_suspect_ends_like_any_other_job(retries, attempt, keyed, failed, timed_out):
    def seen(suspect: bool) -> Finished:
        return Finished(job(attempt), spec(retries, timeout=1.0), keyed, suspect, result=7,
                        error=RuntimeError("x") if failed else None, timed_out=timed_out)
    assert decide(seen(True), fixed(1.0)) == decide(seen(False), fixed(1.0))


def test_a_timeout_wins_over_a_late_result():
    outcome = decide(Finished(job(1), spec(0, timeout=0.5), False, result="late", timed_out=True))
    assert outcome == Dead("failed after 1 attempt(s): TimeoutError: no result within 0.5s", 1,
                           outcome.traceback, "TimeoutError: no result within 0.5s")


# -- what hooks may change ------------------------------------------------------------
@given(st.integers(2, 20), st.floats(allow_nan=True, allow_infinity=True), st.booleans())
def test_hooks_may_change_a_retry_delay_or_give_up_but_not_add_retries(attempt, delay, keyed):
    policy = Retry(attempt, 1.0, keyed, "E: x", "tb")
    moved = adjusted(policy, policy.after(delay), attempt - 1)
    if math.isfinite(delay) and delay >= 0:
        assert moved == Retry(attempt, delay, keyed, "E: x", "tb")
    else:
        assert moved is None
    gave_up = adjusted(policy, policy.give_up("no point"), attempt - 1)
    assert gave_up == Dead("no point", attempt - 1, "tb", "E: x")
    assert policy.give_up() == Dead(f"failed after {attempt - 1} attempt(s): E: x",
                                    attempt - 1, "tb", "E: x")
    dead = Dead("failed after 4 attempt(s): E: x", 4, "tb", "E: x")
    assert adjusted(dead, policy, 4) is None  # no retry past the spec's retries
    # Whatever a hook's Dead says of attempts and error, the record stays true.
    assert adjusted(dead, Dead("mine", 99), 4) == Dead("mine", 4, "tb", "E: x")
    assert adjusted(policy, "retry please", attempt - 1) is None


# -- deliveries -----------------------------------------------------------------------
JOBS = {"work": spec()}


def test_an_undecodable_delivery_is_dead_unrun_under_its_message_id():
    assert on_delivery(b"\xc1 not msgpack", "m-1", None, False, JOBS) == \
        Reject("m-1", "?", Dead("malformed job: " + _unpack_error(b"\xc1 not msgpack"), 0))
    rejected = on_delivery(codec.pack({"v": 2}), None, {}, True, JOBS)
    assert rejected == Reject("?", "?", Dead(
        "malformed job: not a liftline job (expected a map with v=1)", 0))


def _unpack_error(body: bytes) -> str:
    try:
        Job.unpack(body)
    except Exception as exc:
        return str(exc)
    raise AssertionError("decodes")


def test_a_job_without_a_handler_or_with_wrong_arguments_is_dead_unrun():
    unknown = Job("u-1", "nope", {}, None, 2).pack()
    assert on_delivery(unknown, "u-1", None, False, JOBS) == \
        Reject("u-1", "nope", Dead("unknown job 'nope'", 2))
    wrong = on_delivery(Job("w-1", "work", {"y": 1}).pack(), "w-1", None, False, JOBS)
    assert isinstance(wrong, Reject) and wrong.dead.attempts == 1 and wrong.dead.error is None
    assert wrong.dead.reason.startswith("job 'work': arguments do not match")


@given(st.integers(0, 5), st.booleans(), st.booleans())
def test_a_redelivered_job_runs_as_a_suspect_off_the_suspects_or_a_key_queue(count, marked,
                                                                             keyed):
    body = job(3, "k" if keyed else None).pack()
    headers: dict[str, Any] = {"x-delivery-count": count}
    if marked:
        headers[SUSPECT_HEADER] = 1
    seen = on_delivery(body, "id-1", headers, keyed, JOBS)
    if (count > 0 or marked) and not keyed and not marked:
        assert seen == ToSuspects(Job.unpack(body))  # moved once, never twice
    else:
        assert seen == Admit(Job.unpack(body), JOBS["work"], suspect=count > 0 or marked)


@given(st.lists(st.booleans(), max_size=8), st.lists(st.booleans(), max_size=4))
def test_the_longest_prefix_starts_that_keeps_every_suspect_alone(waiting, running):
    def alone(flags: list[bool]) -> bool:
        return not any(flags) or len(flags) == 1

    if not alone(running):
        return  # never happens: the runner starts no such mix
    n = to_start(waiting, running)
    assert 0 <= n <= len(waiting)
    assert alone(running + waiting[:n])
    if n < len(waiting):
        assert not alone(running + waiting[:n + 1])  # starting one more would break it
    if waiting and not running:
        assert n >= 1  # a worker with nothing running always makes progress


@given(st.floats(0, 100), st.floats(0, 100), st.booleans())
def test_a_held_keyed_retry_begins_when_due_and_is_given_back_on_stop(now, retry_at, stopping):
    step = held_retry(now, retry_at, stopping)
    if stopping:
        assert step == "give_back"
    else:
        assert step == ("begin" if now >= retry_at else "wait")


# -- dead letters ---------------------------------------------------------------------
def test_a_dead_letter_keeps_the_reason_its_worker_gave():
    body = job(3).pack()
    headers = {"x-liftline-error": "failed after 3 attempt(s): E", "x-liftline-attempts": 3,
               "x-liftline-traceback": "tb", "x-liftline-job": "work"}
    letter = dead_letter(body, "id-1", headers, 5, 1234)
    assert (letter.job_id, letter.name, letter.dead) == \
        ("id-1", "work", Dead("failed after 3 attempt(s): E", 3, "tb"))
    assert letter.headers == {**headers, "x-liftline-dead-at-ms": 1234}
    ctx = letter.context()
    assert (ctx.job_id, ctx.name, ctx.attempt, ctx.enqueued_at) == ("id-1", "work", 3, 1000.0)


def test_a_letter_rabbitmq_dead_lettered_says_why():
    body = job(1).pack()
    crashed = dead_letter(body, "id-1", {"x-first-death-reason": "delivery_limit",
                                         "x-delivery-count": 3}, 5, 0)
    assert crashed.dead == Dead("crashed or lost its worker 3 times (delivery limit)", 1)
    assert crashed.headers["x-liftline-attempts"] == 1
    uncounted = dead_letter(body, "id-1", {"x-first-death-reason": "delivery_limit"}, 5, 0)
    assert uncounted.dead.reason == "crashed or lost its worker 5 times (delivery limit)"
    other = dead_letter(body, "id-1", None, 5, 0)
    assert other.dead.reason == "dead-lettered by RabbitMQ: unknown"


def test_an_undecodable_dead_letter_is_parked_under_its_message_id_or_unrecorded():
    letter = dead_letter(b"\xc1", "garbage-1", {"x-liftline-error": "malformed job: x",
                                                "x-liftline-attempts": 0}, 5, 0)
    assert (letter.job_id, letter.name, letter.dead.attempts) == ("garbage-1", "?", 0)
    assert letter.context().name == "?"
    assert dead_letter(b"\xc1", None, {}, 5, 0).job_id == "?"  # "?": not recorded in Redis
