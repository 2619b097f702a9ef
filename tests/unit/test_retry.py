"""liftline.retry.RetryPolicy: bounded backoff, capped, with jitter."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liftline.retry import RetryPolicy


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=8, base_s=0.2, cap_s=5.0, jitter=False)
    assert list(policy.delays()) == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


@pytest.mark.parametrize("attempts", [1, 2, 3, 8, 20])
def test_there_is_one_delay_fewer_than_attempts(attempts: int) -> None:
    assert len(list(RetryPolicy(attempts=attempts).delays())) == attempts - 1


def test_a_single_attempt_never_sleeps() -> None:
    assert list(RetryPolicy(attempts=1).delays()) == []


def test_the_default_policy_is_bounded() -> None:
    policy = RetryPolicy()
    delays = list(policy.delays())
    assert len(delays) == policy.attempts - 1
    assert sum(delays) <= policy.cap_s * len(delays)


def test_delay_matches_delays_without_jitter() -> None:
    policy = RetryPolicy(attempts=12, base_s=0.05, cap_s=2.0, jitter=False)
    assert [policy.delay(n) for n in range(11)] == list(policy.delays())


def test_jittered_delays_stay_within_half_and_all_of_the_ceiling() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.1, cap_s=3.0, jitter=True)
    ceilings = list(dataclasses.replace(policy, jitter=False).delays())
    for _ in range(300):
        delays = list(policy.delays())
        assert len(delays) == len(ceilings)
        for delay, ceiling in zip(delays, ceilings, strict=True):
            assert ceiling / 2 <= delay <= ceiling


def test_jitter_actually_varies_the_delays() -> None:
    policy = RetryPolicy(attempts=2, base_s=1.0, cap_s=1.0, jitter=True)
    samples = {policy.delay(0) for _ in range(50)}
    assert len(samples) > 1


def test_jittered_delays_grow_on_average() -> None:
    policy = RetryPolicy(attempts=5, base_s=0.1, cap_s=100.0, jitter=True)
    means = [sum(policy.delay(n) for _ in range(200)) / 200 for n in range(4)]
    assert means == sorted(means)
    assert means[-1] > 4 * means[0]


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.001, max_value=10.0),
    cap=st.floats(min_value=0.001, max_value=600.0),
    jitter=st.booleans(),
)
def test_any_retry_delay_is_bounded_by_the_cap(attempt: int, base: float, cap: float,
                                               jitter: bool) -> None:
    # reconnect_attempts has no upper bound in Settings, so a long-lived
    # publisher can reach very high attempt numbers.
    delay = RetryPolicy(attempts=attempt + 2, base_s=base, cap_s=cap, jitter=jitter).delay(attempt)
    assert 0 < delay <= cap


def test_many_attempts_stay_at_the_cap() -> None:
    policy = RetryPolicy(attempts=2000, base_s=0.2, cap_s=5.0, jitter=False)
    delays = list(policy.delays())
    assert len(delays) == 1999
    assert max(delays) == 5.0
    assert delays[-1] == 5.0


def test_policies_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().attempts = 100  # type: ignore[misc]
