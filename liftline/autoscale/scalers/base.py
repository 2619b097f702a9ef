"""The contract every scaler backend keeps.

A scaler knows how many workers it runs and can be asked for another count.
``scale_to`` returns quickly: removing a worker starts its graceful stop
(SIGTERM: stop consuming, flush, hand over, finish running jobs, exit 0) and
:meth:`Scaler.poll` later reaps it, so the control loop never blocks on a
hand-over. A backend that cannot act raises :class:`~liftline.errors.ScaleError`;
the autoscaler logs it and tries again at the next interval.
"""

from __future__ import annotations

import abc
import logging
import shlex
import subprocess
from typing import Any

from liftline.errors import ScaleError

log = logging.getLogger(__name__)


class Scaler(abc.ABC):
    """Sets the number of worker processes, containers or pods."""

    name = "base"

    @abc.abstractmethod
    def current(self) -> int:
        """Workers running and not being stopped."""

    @abc.abstractmethod
    def scale_to(self, n: int) -> None:
        """Start or stop workers so that ``current()`` becomes ``n``."""

    def poll(self) -> None:  # noqa: B027 - optional hook
        """Housekeeping between decisions (reap stopped workers)."""

    def describe(self) -> dict[str, Any]:
        """What to show about the pool in `liftline status`."""
        return {"backend": self.name, "current": self.current()}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the scaler holds; the local pool stops its workers."""


def run_command(argv: list[str], timeout_s: float) -> str:
    """Run ``argv``; its stdout, or ScaleError naming the command and its stderr."""
    shown = shlex.join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as exc:
        raise ScaleError(f"{shown}: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ScaleError(f"{shown}: no answer within {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        raise ScaleError(f"{shown} exited with {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


class DryRun(Scaler):
    """Changes nothing; pretends each decision took effect, so a dry run shows the
    sequence of decisions a real run would make."""

    name = "dry-run"

    def __init__(self, start: int) -> None:
        self._n = start

    def current(self) -> int:
        return self._n

    def scale_to(self, n: int) -> None:
        self._n = n
