"""The autoscaling policy: clamp(ceil(backlog / target), floor, max), up at once,
down only after the quiet window; bounds, steps and the replication floor hold."""

from __future__ import annotations

import pytest

from liftline.autoscale.policy import DOWN, STEADY, UP, WAIT, Policy, PolicyConfig
from liftline.errors import ConfigError
from liftline.settings import Settings


def run(policy: Policy, backlogs: list[int], start: int = 1, interval: float = 1.0,
        ) -> list[int]:
    """Feed one backlog per interval, applying each decision; the pool after each."""
    pool, out = start, []
    for i, backlog in enumerate(backlogs):
        decision = policy.decide(i * interval, pool, backlog)
        pool = decision.desired
        out.append(pool)
    return out


def test_desired_is_the_clamped_ceiling_of_backlog_over_target() -> None:
    policy = Policy(PolicyConfig(min=1, max=6, target=5000, quiet_s=0))
    assert [policy.needed(b) for b in (0, 1, 5000, 5001, 12_000, 10**9)] == [1, 1, 1, 2, 3, 6]


def test_scale_up_happens_at_once_and_down_only_after_the_quiet_window() -> None:
    policy = Policy(PolicyConfig(min=1, max=6, target=100, quiet_s=3))
    # A burst, then nothing: up at the first reading; lower from t=1; down at t=4.
    assert run(policy, [450, 0, 0, 0, 0, 0]) == [5, 5, 5, 5, 1, 1]


def test_flapping_backlog_does_not_flap_the_pool() -> None:
    policy = Policy(PolicyConfig(min=1, max=6, target=100, quiet_s=5))
    flapping = [600, 0] * 20  # high, low, high, low, ... every second
    pools = run(policy, flapping)
    changes = sum(1 for a, b in zip([1, *pools], pools, strict=False) if a != b)
    assert changes == 1, pools  # up once, never down: no low reading lasted 5 s
    assert set(pools) == {6}


def test_a_brief_dip_restarts_the_quiet_window() -> None:
    policy = Policy(PolicyConfig(min=1, max=6, target=100, quiet_s=3))
    pools = run(policy, [400, 0, 0, 400, 0, 0, 0, 0, 0])
    assert pools[:6] == [4, 4, 4, 4, 4, 4]  # the dip at t=1..2 did not last; t=3 reset it
    assert pools[-1] == 1 and pools.index(1) == 7  # lower since t=4, 3 s later: t=7


def test_scale_down_goes_to_the_highest_need_seen_in_the_window() -> None:
    policy = Policy(PolicyConfig(min=1, max=8, target=100, quiet_s=2))
    # Lower from t=1 (needs 3, then 1): at t=3 down to 3, the highest need in the
    # window; the next step down waits a new window (t=4..6).
    assert run(policy, [800, 300, 100, 0, 0, 0, 0, 0]) == [8, 8, 8, 3, 3, 3, 1, 1]


def test_min_max_and_step_hold() -> None:
    policy = Policy(PolicyConfig(min=2, max=5, target=10, quiet_s=0, max_step=2))
    decisions = []
    pool = 2
    for t, backlog in enumerate([1000, 1000, 1000, 1000, 0, 0, 0, 0, 0]):
        d = policy.decide(float(t), pool, backlog)
        decisions.append(d)
        assert abs(d.desired - pool) <= 2  # step bound
        assert 2 <= d.desired <= 5  # min and max
        pool = d.desired
    assert [d.desired for d in decisions[:3]] == [4, 5, 5]
    assert "capped at max 5" in decisions[0].reason and "at most 2 more" in decisions[0].reason
    assert pool == 2  # back to min, never below
    assert decisions[0].action == UP and decisions[4].action == DOWN


def test_replication_floor_keeps_r_workers_when_asked() -> None:
    floor = Policy(PolicyConfig(min=1, max=6, target=100, quiet_s=0, replicas_floor=3))
    assert run(floor, [0, 0, 0], start=1) == [3, 3, 3]
    d = floor.decide(10.0, 5, 0)
    assert d.action == DOWN and d.desired == 3 and d.needed == 3
    # Without asking, an empty backlog goes to min.
    plain = Policy(PolicyConfig(min=1, max=6, target=100, quiet_s=0))
    assert run(plain, [0], start=3) == [1]


def test_the_replication_floor_comes_from_settings_when_asked() -> None:
    asked = PolicyConfig.from_settings(Settings(replicas=3, autoscale_keep_replicas=True))
    assert asked.floor == 3
    assert PolicyConfig.from_settings(Settings(replicas=3)).floor == 1
    with pytest.raises(ConfigError, match="needs 4 workers"):
        PolicyConfig.from_settings(Settings(replicas=4, autoscale_keep_replicas=True,
                                            autoscale_max=3))


def test_a_decision_carries_its_inputs_and_reason() -> None:
    policy = Policy(PolicyConfig(min=1, max=4, target=20_000, quiet_s=3))
    first = policy.decide(0.0, 1, 150_000, 50_000)
    assert (first.backlog, first.stream_backlog, first.job_backlog) == (200_000, 150_000, 50_000)
    assert (first.current, first.needed, first.desired, first.action) == (1, 4, 4, UP)
    assert "needs 10 worker(s)" in first.reason and "capped at max 4" in first.reason
    second = policy.decide(2.0, 4, 100_000, 0)
    assert second.rate == -50_000.0  # draining 50k/s
    assert second.action == STEADY
    third = policy.decide(3.0, 4, 0, 0)
    assert third.action == WAIT and "quiet window" in third.reason
    assert "backlog=0" in third.describe() and "current=4" in third.describe()


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ConfigError):
        PolicyConfig(min=3, max=2)
    with pytest.raises(ConfigError):
        PolicyConfig(target=0)
    with pytest.raises(ConfigError, match="autoscale_backend"):
        Settings(autoscale_backend="kubernetes")
    with pytest.raises(ConfigError, match="expected true or false"):
        Settings.from_env({"LIFTLINE_AUTOSCALE_KEEP_REPLICAS": "maybe"})
    assert Settings.from_env({"LIFTLINE_AUTOSCALE_KEEP_REPLICAS": "yes"}).autoscale_keep_replicas
