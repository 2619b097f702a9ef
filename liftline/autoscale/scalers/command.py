"""Scale by running a command of the user's with ``{n}`` replaced by the count.

The command is split like a shell line (``shlex``) but not run through a shell:
``./scale.sh {n}`` or ``kubectl scale deploy/liftline-worker --replicas={n}``.
It must exit 0 once the new count is requested; what it prints is logged.
"""

from __future__ import annotations

import logging
import shlex

from liftline.autoscale.scalers.base import Scaler, run_command
from liftline.errors import ConfigError

log = logging.getLogger(__name__)


class CommandScaler(Scaler):
    """The count is what the last successful command asked for."""

    name = "command"

    def __init__(self, command: str, start: int, *, timeout_s: float = 120.0) -> None:
        if "{n}" not in command:
            raise ConfigError(f"--command {command!r} must contain {{n}} (the worker count)")
        self.template = shlex.split(command)
        self.timeout_s = timeout_s
        self._n = start

    def argv(self, n: int) -> list[str]:
        return [part.replace("{n}", str(n)) for part in self.template]

    def current(self) -> int:
        return self._n

    def scale_to(self, n: int) -> None:
        out = run_command(self.argv(n), self.timeout_s)
        log.info("scale command for %d worker(s) done%s", n,
                 f": {out.strip()[-300:]}" if out.strip() else "")
        self._n = n
