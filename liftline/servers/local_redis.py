"""One Redis from the system's ``redis-server``, run as the current user, on 127.0.0.1.

:class:`LocalRedis` is every local Redis process liftline starts: the single server,
a replica (``replica_of``), a Redis Cluster node (``cluster``) and, through
:class:`~liftline.servers.sentinel.LocalSentinel`, a Sentinel. One start (its own
process group), one readiness check (PING), one stop by PID.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

from liftline.errors import ServerError
from liftline.servers.base import port_answers, redis_answers
from liftline.servers.process import end_group, kill_group, log_tail, spawn_in_group

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


class LocalRedis:
    """One ``redis-server`` with an append-only file in ``data_dir``, on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        log_file: Path | None = None,
        appendfsync: str = "everysec",
        replica_of: int | None = None,
        cluster: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.log_file = log_file or self.data_dir / "redis-server.log"
        self.appendfsync = appendfsync
        # Started as a replica of the Redis on 127.0.0.1:<replica_of> (Sentinel may move it).
        self.replica_of = replica_of
        # Cluster mode: the node keeps its view of the cluster in nodes.conf in data_dir.
        self.cluster = cluster
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the started ``redis-server``, if running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    kind = "Redis"  # in log lines and errors

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start Redis and return once it answers PING (its AOF is loaded by then).

        Raises ServerError if it exits or does not answer within ``timeout_s``.
        """
        if self.pid is not None:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self._proc = spawn_in_group(self._argv(binary), None, self.log_file)
        try:
            self._wait_ready(began + timeout_s)
        except BaseException:
            self.stop(timeout_s=5.0)
            raise
        log.info("%s ready on %d in %.1fs", self.kind, self.port, time.monotonic() - began)

    def _argv(self, binary: str) -> list[str]:
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",
            # A replica syncs at once, not after the default 5 s wait for more replicas.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.replica_of is not None:
            argv += ["--replicaof", HOST, str(self.replica_of)]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        return argv

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerError(
                    f"{self.kind} on {self.port} exited with code {code} while starting\n"
                    f"{log_tail(self.log_file)}"
                )
            if port_answers(HOST, self.port) and redis_answers(self.redis_url):
                return
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"{self.kind} on {self.port} not ready in time\n{log_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM Redis (it fsyncs the AOF), SIGKILL after ``timeout_s``; idempotent."""
        if self._proc is not None:
            end_group(self._proc, [], timeout_s, f"{self.kind} on {self.port}")
            self._proc = None

    def kill(self) -> None:
        """SIGKILL Redis at once, as a crash would."""
        if self._proc is not None:
            kill_group(self._proc, [], f"{self.kind} on {self.port}")
            self._proc = None
