"""liftline.jobs.acks.plan_acks: acking many finished jobs at once never acks an open one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from liftline.jobs.acks import plan_acks


def test_finished_below_every_open_delivery_take_one_multiple_ack():
    assert plan_acks([3, 1, 2], {4, 7}) == (3, [])
    assert plan_acks([5, 2], set()) == (5, [])


def test_finished_above_an_open_delivery_are_acked_one_by_one():
    assert plan_acks([1, 5, 2, 9], {4, 7}) == (2, [5, 9])
    assert plan_acks([6], {4}) == (None, [6])


@given(st.sets(st.integers(min_value=1, max_value=60), min_size=1),
       st.sets(st.integers(min_value=1, max_value=60)), st.sets(st.integers(1, 60)))
def test_acks_cover_every_finished_tag_and_no_open_one(finished, still_open, acked_before):
    """Tags delivered on a channel are settled (``acked_before``), finished now, or still
    open; whatever the mix, the plan acks exactly the finished ones among the unsettled."""
    still_open -= finished
    acked_before -= finished | still_open
    up_to, singles = plan_acks(sorted(finished), still_open)
    covered = set(singles)
    if up_to is not None:
        # A multiple ack settles every unsettled tag up to it on the channel.
        covered |= {t for t in range(1, up_to + 1) if t not in acked_before}
    assert covered >= finished
    assert not covered & still_open
