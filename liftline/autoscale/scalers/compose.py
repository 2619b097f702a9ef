"""Scale a docker compose service: ``docker compose up -d --scale worker=N``.

``--no-recreate`` keeps running workers as they are and ``--no-deps`` leaves the
other services alone. Compose stops surplus containers with SIGTERM and waits
the service's ``stop_grace_period`` before SIGKILL, so a worker being removed
hands its partitions over like any other SIGTERMed worker (the repository's
docker-compose.yml gives it 60 s).
"""

from __future__ import annotations

import logging

from liftline.autoscale.scalers.base import Scaler, run_command
from liftline.errors import ScaleError

log = logging.getLogger(__name__)


class ComposeScaler(Scaler):
    """Counts the service's running containers with ``docker compose ps``."""

    name = "compose"

    def __init__(self, service: str = "worker", *, files: tuple[str, ...] = (),
                 project: str | None = None, docker: str = "docker",
                 timeout_s: float = 180.0) -> None:
        self.service = service
        self.timeout_s = timeout_s
        self.base = [docker, "compose"]
        for file in files:
            self.base += ["-f", file]
        if project:
            self.base += ["-p", project]
        self._n: int | None = None

    def scale_argv(self, n: int) -> list[str]:
        return [*self.base, "up", "-d", "--no-deps", "--no-recreate",
                "--scale", f"{self.service}={n}", self.service]

    def ps_argv(self) -> list[str]:
        return [*self.base, "ps", "-q", "--status", "running", self.service]

    def current(self) -> int:
        try:
            out = run_command(self.ps_argv(), 30)
        except ScaleError as exc:
            if self._n is None:
                raise
            log.warning("counting %s containers failed (%s); assuming %d", self.service, exc,
                        self._n)
            return self._n
        self._n = len([line for line in out.splitlines() if line.strip()])
        return self._n

    def scale_to(self, n: int) -> None:
        run_command(self.scale_argv(n), self.timeout_s)
        log.info("compose service %s scaled to %d", self.service, n)
        self._n = n
