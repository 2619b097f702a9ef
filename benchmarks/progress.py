"""Progress lines (to stderr, so stdout carries only the results table) and time limits."""

from __future__ import annotations

import sys
import time

_T0 = time.monotonic()


def say(message: str) -> None:
    """One progress line, stamped with the seconds since the run began."""
    sys.stderr.write(f"[{time.monotonic() - _T0:7.1f}s] {message}\n")
    sys.stderr.flush()


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s"


class Ticker:
    """True once every ``every_s`` seconds: for periodic progress lines in hot loops."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self._next = time.monotonic() + every_s

    def due(self) -> bool:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            return True
        return False


class Deadline:
    """A time limit for one phase of a scenario."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at
