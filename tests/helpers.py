"""Small helpers shared by the test layers (import as ``from helpers import …``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from liftline.servers import rabbitmq_available, redis_available

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.05,
    message: str = "",
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises AssertionError (with ``message`` and the last value seen) if that
    does not happen within ``timeout_s``. The predicate is always called at
    least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = message or getattr(predicate, "__name__", "condition")
            raise AssertionError(
                f"timed out after {timeout_s:.1f}s waiting for {detail} (last value: {value!r})"
            )
        time.sleep(min(interval_s, remaining))


def missing_local_binaries() -> str | None:
    """Why :class:`~liftline.servers.LocalServers` cannot run here, or None if it can."""
    missing = [
        name
        for name, present in (
            ("RabbitMQ (/usr/lib/rabbitmq/bin/rabbitmq-server)", rabbitmq_available()),
            ("redis-server", redis_available()),
        )
        if not present
    ]
    return f"not installed: {', '.join(missing)}" if missing else None
