"""A Redis primary, its replicas and three Sentinels from the system binaries, on 127.0.0.1.

Behind ``liftline up --redis-sentinel`` and the Sentinel tests. Every server is a
:class:`~liftline.servers.local_redis.LocalRedis` (a Sentinel is one started with
``--sentinel``), each with its data directory under ``data_dir`` and stopped by its
PID. Sentinel rewrites its own configuration file as it learns (the current
primary, the other Sentinels), so a set started again in the same directory starts
the server the Sentinels last named as primary as the primary, and the others as
its replicas: a failover is not undone by a restart.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import redis

from liftline.errors import ServerError
from liftline.servers.base import free_ports, stop_each
from liftline.servers.local_redis import HOST, LocalRedis

log = logging.getLogger(__name__)
SERVICE = "liftline"  # the name the Sentinels monitor the primary under
QUORUM = 2  # of 3 Sentinels agree that the primary is down


class LocalSentinel(LocalRedis):
    """One Redis Sentinel watching ``service``'s primary on 127.0.0.1:``primary_port``.

    Its configuration file (``data_dir/sentinel.conf``) is written on the first start
    only; afterwards it is the Sentinel's own, rewritten as the set changes.
    """

    kind = "Sentinel"

    def __init__(self, data_dir: Path, *, port: int, primary_port: int,
                 down_after_ms: int = 5000, service: str = SERVICE) -> None:
        super().__init__(data_dir, port=port, log_file=Path(data_dir) / "sentinel.log")
        self.primary_port = primary_port
        self.down_after_ms = down_after_ms
        self.service = service

    @property
    def conf(self) -> Path:
        return self.data_dir / "sentinel.conf"

    def _argv(self, binary: str) -> list[str]:
        if not self.conf.exists():
            s = self.service
            self.conf.write_text(
                f"port {self.port}\nbind {HOST}\ndir {self.data_dir}\n"
                f"sentinel monitor {s} {HOST} {self.primary_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {s} {self.down_after_ms}\n"
                f"sentinel failover-timeout {s} 5000\n"
                f"sentinel parallel-syncs {s} 2\n")
        return [binary, str(self.conf), "--sentinel"]

    def known_primary(self) -> int | None:
        """The primary's port as this Sentinel's configuration file last recorded it."""
        try:
            text = self.conf.read_text()
        except OSError:
            return None
        found = re.search(rf"^sentinel monitor {re.escape(self.service)} \S+ (\d+) ", text,
                          re.MULTILINE)
        return int(found.group(1)) if found else None


class LocalSentinelSet:
    """``1 + replicas`` Redis servers and 3 Sentinels; ``data_dir/redis-<port>``,
    ``data_dir/sentinel-<port>``.

    ``redis_ports`` (primary first) and ``sentinel_ports`` left ``None`` are picked
    free at construction. :attr:`url` is the ``redis+sentinel://`` URL of the set.
    """

    def __init__(self, data_dir: Path, *, replicas: int = 1, redis_ports: list[int] | None = None,
                 sentinel_ports: list[int] | None = None, down_after_ms: int = 5000,
                 sentinels: int = 3) -> None:
        self.data_dir = Path(data_dir)
        self.redis_ports = redis_ports or free_ports(replicas + 1)
        self.sentinel_ports = sentinel_ports or free_ports(sentinels)
        first = self.redis_ports[0]
        self.sentinels = [
            LocalSentinel(self.data_dir / f"sentinel-{port}", port=port, primary_port=first,
                          down_after_ms=down_after_ms) for port in self.sentinel_ports]
        self.servers: dict[int, LocalRedis] = {}

    @property
    def url(self) -> str:
        """``redis+sentinel://<every Sentinel>/liftline/0``: what liftline is given."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _server(self, port: int, replica_of: int | None) -> LocalRedis:
        return LocalRedis(self.data_dir / f"redis-{port}", port=port, replica_of=replica_of)

    # -- start / stop ------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        """Start the servers (the last known primary first), then the Sentinels, and
        return once every replica is in sync and a Sentinel names the primary.

        Raises ServerError (what was started here is stopped again) otherwise.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        known = {s.known_primary() for s in self.sentinels} - {None}
        primary = known.pop() if len(known) == 1 else self.redis_ports[0]
        if primary not in self.redis_ports:
            primary = self.redis_ports[0]
        try:
            self.start_server(primary, replica_of=None, timeout_s=timeout_s)
            for port in self.redis_ports:
                if port != primary:
                    self.start_server(port, replica_of=primary, timeout_s=timeout_s)
            for sentinel in self.sentinels:
                sentinel.start(max(1.0, deadline - time.monotonic()))
            self._wait(lambda: self.replicas_online(primary) >= len(self.redis_ports) - 1,
                       deadline, "the replicas in sync with the primary")
            self._wait(lambda: self.primary_port() == primary, deadline,
                       f"a Sentinel naming {HOST}:{primary} as primary")
        except BaseException:
            self.stop(timeout_s=5.0)
            raise
        log.info("Redis Sentinel set ready in %.1fs (primary %d)", time.monotonic() - began,
                 primary)

    def start_server(self, port: int, *, replica_of: int | None, timeout_s: float = 20.0) -> None:
        """Start the server on ``port`` (again), as primary or as a replica of ``replica_of``."""
        server = self.servers.get(port)
        if server is None or server.pid is None:
            server = self.servers[port] = self._server(port, replica_of)
        server.start(timeout_s)

    def kill_server(self, port: int) -> None:
        """SIGKILL the server on ``port``, as a crash would."""
        self.servers[port].kill()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the Sentinels first (so that they start no failover), then the servers,
        each by its PID; idempotent."""
        stop_each([*self.sentinels, *self.servers.values()], timeout_s)

    def kill(self) -> None:
        """SIGKILL everything: the fast teardown for throwaway data."""
        for proc in [*self.sentinels, *self.servers.values()]:
            proc.kill()

    # -- state -------------------------------------------------------------
    def running_pids(self) -> list[int]:
        procs = [*self.servers.values(), *self.sentinels]
        return [p.pid for p in procs if p.pid is not None]

    def primary_port(self) -> int | None:
        """The port the first Sentinel that answers names as the primary, if any."""
        for port in self.sentinel_ports:
            client = redis.Redis(host=HOST, port=port, socket_timeout=1)
            try:
                addr = client.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if addr:
                return int(addr[1])
        return None

    def replicas_online(self, port: int) -> int:
        """How many replicas the server on ``port`` reports ``online`` (0 if it fails)."""
        info = _replication(port)
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")

    def linked_replica(self, port: int) -> bool:
        """Whether the server on ``port`` is a replica whose link to its primary is up."""
        info = _replication(port)
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    @staticmethod
    def _wait(done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            if time.monotonic() >= deadline:
                raise ServerError(f"Redis Sentinel set: no {what} in time")
            time.sleep(0.1)


def _replication(port: int) -> dict[str, object]:
    client = redis.Redis(host=HOST, port=port, socket_timeout=1)
    try:
        return dict(client.info("replication"))
    except redis.RedisError:
        return {}
    finally:
        client.close()
