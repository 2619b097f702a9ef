"""Acking job deliveries: which tags of a channel are still open, and how to ack
many finished ones at once without acking an open one. Runner thread only."""

from __future__ import annotations

from typing import Any


def plan_acks(finished: list[int], still_open: set[int]) -> tuple[int | None, list[int]]:
    """How to ack the ``finished`` delivery tags of a channel whose other unsettled
    deliveries are ``still_open``: one multiple ack up to the returned tag (None: no
    multiple ack) for every finished tag below the lowest open one, which it must
    not reach, and single acks for the rest."""
    lowest_open = min(still_open, default=None)
    below = [t for t in finished if lowest_open is None or t < lowest_open]
    singles = sorted(t for t in finished if lowest_open is not None and t > lowest_open)
    return (max(below) if below else None), singles


class AckLedger:
    """Per consuming channel, the delivery tags not yet acked or given back."""

    def __init__(self) -> None:
        self._open: dict[Any, set[int]] = {}

    def clear(self) -> None:
        """A new connection: its channels start afresh."""
        self._open = {}

    def delivered(self, channel: Any, tag: int) -> None:
        self._open.setdefault(channel, set()).add(tag)

    def settled(self, channel: Any, tag: int) -> None:
        """``tag`` is acked or given back: a multiple ack may now pass over it."""
        self._open.get(channel, set()).discard(tag)

    def ack(self, channel: Any, tag: int) -> None:
        self.settled(channel, tag)
        channel.basic_ack(tag)

    def give_back(self, channel: Any, tag: int) -> None:
        """Requeue the delivery: it runs again, in its queue's order, elsewhere."""
        self.settled(channel, tag)
        channel.basic_nack(tag, requeue=True)

    def ack_finished(self, deliveries: list[tuple[Any, int]]) -> None:
        """Ack these ``(channel, tag)`` deliveries, sent on the loop's next turn in one
        write: per channel one multiple ack for those below every delivery still open
        (running, waiting or held), single acks for the rest."""
        by_channel: dict[Any, list[int]] = {}
        for channel, tag in deliveries:
            by_channel.setdefault(channel, []).append(tag)
        for channel, tags in by_channel.items():
            still_open = self._open.get(channel, set())
            still_open.difference_update(tags)
            up_to, singles = plan_acks(tags, still_open)
            if up_to is not None:
                channel._impl.basic_ack(up_to, multiple=True)
            for tag in singles:
                channel._impl.basic_ack(tag)
