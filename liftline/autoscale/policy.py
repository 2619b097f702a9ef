"""The scaling policy: from a backlog and the current worker count to a desired count.

Pure and deterministic (time is passed in), so it is tested without servers.

    needed  = clamp(ceil(backlog / target), floor, max)     floor = max(min, R if asked)
    up      : at once, at most ``max_step`` workers per decision
    down    : only after ``needed`` stayed below ``current`` for the whole quiet
              window, then to the highest count needed during that window
              (at most ``max_step`` fewer); the next step down waits a new window

A backlog that flaps between high and low therefore scales up once and stays:
a low reading has to last the quiet window before any worker is stopped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from liftline.errors import ConfigError
from liftline.settings import Settings

UP, DOWN, WAIT, STEADY = "up", "down", "wait", "steady"


@dataclass(frozen=True)
class PolicyConfig:
    """Bounds of the policy; ``replicas_floor`` is R when every partition must keep R replicas."""

    min: int = 1
    max: int = 6
    target: int = 5000
    quiet_s: float = 30.0
    max_step: int = 0  # 0: no limit
    replicas_floor: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.max or self.max < 1 or self.target < 1:
            raise ConfigError(f"autoscale bounds: need 0 <= min ({self.min}) <= max ({self.max}),"
                              f" max >= 1 and target ({self.target}) >= 1")
        if self.replicas_floor > self.max:
            raise ConfigError(f"keeping {self.replicas_floor} replicas of every partition needs "
                              f"{self.replicas_floor} workers, more than --max {self.max}")

    @property
    def floor(self) -> int:
        return max(self.min, self.replicas_floor)

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        return cls(min=settings.autoscale_min, max=settings.autoscale_max,
                   target=settings.autoscale_target,
                   quiet_s=settings.autoscale_scale_down_after_s,
                   max_step=settings.autoscale_max_step,
                   replicas_floor=settings.replicas if settings.autoscale_keep_replicas else 0)


@dataclass(frozen=True)
class Decision:
    """One evaluation: the inputs, what the pool should be, and why."""

    at: float
    backlog: int
    stream_backlog: int
    job_backlog: int
    rate: float  # backlog change per second since the previous decision (< 0: draining)
    current: int
    needed: int  # clamp(ceil(backlog / target), floor, max)
    desired: int  # what the pool is set to now
    action: str  # up | down | wait | steady
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.action}: backlog={self.backlog} (streams {self.stream_backlog}, "
                f"jobs {self.job_backlog}) rate={self.rate:+.0f}/s current={self.current} "
                f"desired={self.desired} - {self.reason}")


class Policy:
    """Keeps the little state the policy needs: the quiet window and the last backlog."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._lower_since: float | None = None
        self._highest_lower = 0  # the highest `needed` seen during the quiet window
        self._last: tuple[float, int] | None = None

    def needed(self, backlog: int) -> int:
        c = self.config
        return min(max(math.ceil(backlog / c.target), c.floor), c.max)

    def decide(self, now: float, current: int, stream_backlog: int,
               job_backlog: int = 0) -> Decision:
        """The decision for this backlog and pool size at time ``now`` (seconds)."""
        c = self.config
        backlog = max(0, stream_backlog) + max(0, job_backlog)
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (backlog - self._last[1]) / (now - self._last[0])
        self._last = (now, backlog)
        raw = math.ceil(backlog / c.target)
        needed = self.needed(backlog)
        step = c.max_step or math.inf
        if needed > current:
            self._lower_since = None
            desired = int(min(needed, current + step))
            why = [f"backlog {backlog} needs {raw} worker(s) at {c.target} each"]
            if raw > c.max:
                why.append(f"capped at max {c.max}")
            if raw < needed:
                why.append(f"floor {c.floor}" + (f" (keeps {c.replicas_floor} replicas)"
                                                 if c.replicas_floor >= c.min else ""))
            if desired < needed:
                why.append(f"at most {c.max_step} more per interval")
            action, reason = UP, "; ".join(why)
        elif needed < current:
            if self._lower_since is None:
                self._lower_since, self._highest_lower = now, needed
            self._highest_lower = max(self._highest_lower, needed)
            waited = now - self._lower_since
            if waited >= c.quiet_s:
                desired = int(max(self._highest_lower, current - step))
                action = DOWN
                reason = (f"needed at most {self._highest_lower} (< {current}) for "
                          f"{waited:.1f}s >= quiet window {c.quiet_s:g}s")
                if desired > self._highest_lower:
                    reason += f"; at most {c.max_step} fewer per interval"
                self._lower_since = None  # a further step down waits a new window
            else:
                desired, action = current, WAIT
                reason = (f"needs {needed} < {current}; lower for {waited:.1f}s of the "
                          f"{c.quiet_s:g}s quiet window")
        else:
            self._lower_since = None
            desired, action, reason = current, STEADY, f"backlog {backlog} fits {current} worker(s)"
        return Decision(at=now, backlog=backlog, stream_backlog=stream_backlog,
                        job_backlog=job_backlog, rate=round(rate, 1), current=current,
                        needed=needed, desired=desired, action=action, reason=reason)
