"""Bounded retry policies: exponential backoff with a cap and full jitter.

Never retry forever by default: a hung publisher is worse than an error.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the delay before try n is up to base·2ⁿ, capped."""

    attempts: int = 8
    base_s: float = 0.2
    cap_s: float = 5.0
    jitter: bool = True

    def delays(self) -> Iterator[float]:
        """The delays to sleep before each retry (``attempts - 1`` of them)."""
        for n in range(self.attempts - 1):
            ceiling = min(self.cap_s, self.base_s * (2 ** min(n, 60)))
            yield random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 60)))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling
