"""The local stack behind `liftline up`: servers from system binaries, workers, ingest.

Everything lives under the data directory (``.liftline/`` by default) and
survives restarts. Only processes this stack started are ever signalled, by PID.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from liftline.autoscale.process import AutoscalerProcess
from liftline.cluster import bootstrap
from liftline.errors import AlreadyRunning, LiftlineError, ServerError
from liftline.procs import spawn
from liftline.settings import Settings, mask_url
from liftline.store.keys import Keys
from liftline.store.redis_store import connect

if TYPE_CHECKING:
    from liftline.ingest.process import IngestProcess
    from liftline.servers.cluster import LocalRabbitCluster
    from liftline.servers.local import LocalRabbitMQ, LocalRedis
    from liftline.servers.redis_cluster import LocalRedisCluster
    from liftline.servers.sentinel import LocalSentinelSet

log = logging.getLogger(__name__)

Say = Callable[[str], None]
# What ``liftline up`` starts for Redis: one server, a primary with a replica and three
# Sentinels (a ``redis+sentinel://`` URL), or a 3-master Redis Cluster (``redis+cluster://``).
REDIS_KINDS = ("single", "sentinel", "cluster")


def _port(url: str, default: int) -> int:
    return urllib.parse.urlsplit(url).port or default


class LocalStack:
    """Servers (unless given by URL), topology, and worker processes."""

    def __init__(self, settings: Settings, *, workers: int = 1, app: str | None = None,
                 reuse_amqp: bool = False, reuse_redis: bool = False, say: Say = print,
                 ingest_port: int | None = None,
                 autoscale: tuple[int, int] | None = None, rabbitmq_nodes: int = 1,
                 redis_kind: str = "single") -> None:
        if redis_kind not in REDIS_KINDS:
            raise LiftlineError(f"unknown Redis kind {redis_kind!r}; one of {REDIS_KINDS}")
        self.settings = settings
        # More than 1: a RabbitMQ cluster of that many nodes (data in rabbitmq-cluster/).
        self.rabbitmq_nodes = rabbitmq_nodes
        self.rabbit_cluster: LocalRabbitCluster | None = None
        self.autoscale = autoscale  # (min, max): an autoscaler runs the workers instead
        self.autoscaler: AutoscalerProcess | None = None
        self.ingest_port = ingest_port  # None: no HTTP ingest service
        self.workers = workers
        self.app = app
        self.reuse_amqp = reuse_amqp
        self.reuse_redis = reuse_redis
        self.say = say
        self.root = settings.data_path.resolve()
        self._lock_file: IO[str] | None = None
        self.rabbitmq: LocalRabbitMQ | None = None
        self.redis: LocalRedis | None = None
        self.redis_kind = redis_kind
        self.redis_sentinels: LocalSentinelSet | None = None
        self.redis_cluster: LocalRedisCluster | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ingest: IngestProcess | None = None
        self._stop = False

    # -- lock ---------------------------------------------------------------
    def _lock(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "up.lock", "a+")  # noqa: SIM115 - held for the stack's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise AlreadyRunning(
                f"liftline up is already running in {self.root} (pid {holder}); "
                "stop it with Ctrl-C or SIGTERM first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    # -- start ----------------------------------------------------------------
    def start(self) -> None:
        self._lock()
        self._start_servers()
        self._prepare_cluster()
        for _ in range(self.workers):
            self._spawn_worker()
        self._wait_workers()
        if self.ingest_port is not None:
            self._start_ingest()
        if self.autoscale is not None:
            self._start_autoscaler()
        # The streams and the workers' job queues exist now: have their Ra
        # registrations on disk, so a kill of a node does not lose them.
        if self.rabbitmq is not None:
            self.rabbitmq.sync_to_disk()
        if self.rabbit_cluster is not None:
            self.rabbit_cluster.sync_to_disk()
        self.say("liftline ready")

    def _start_autoscaler(self) -> None:
        assert self.autoscale is not None
        self.autoscaler = AutoscalerProcess(
            self.settings, self.root / "logs" / "autoscale.log", self.root / "logs" / "workers",
            bounds=self.autoscale, app=self.app).start()
        workers = self.autoscaler.wait_ready()
        self.say(f"autoscaler ready: {self.autoscale[0]}..{self.autoscale[1]} workers, "
                 f"{workers} running (pid {self.autoscaler.pid}, log "
                 f"{self.root / 'logs' / 'autoscale.log'})")

    def _start_ingest(self) -> None:
        from liftline.ingest.process import IngestProcess

        self.ingest = IngestProcess(self.settings, self.root / "logs" / "ingest.log",
                                    port=self.ingest_port, app=self.app).start()
        self.ingest.wait_ready()
        self.say(f"ingest ready: {self.ingest.url} (pid {self.ingest.pid}); "
                 f"dashboard: {self.ingest.url}/dashboard")

    def _start_servers(self) -> None:
        from liftline.servers.base import free_ports
        from liftline.servers.local import LocalRabbitMQ, LocalRedis

        s = self.settings
        if self.reuse_amqp:
            self.say(f"rabbitmq: using {mask_url(s.amqp_url)}")
        elif self.rabbitmq_nodes > 1:
            self._start_rabbit_cluster()
        else:
            amqp_port = _port(s.amqp_url, 5673)
            if amqp_port == 5673:
                mgmt, stream, dist, epmd = 15673, 5553, 25673, 4370
            else:  # a non-default AMQP port: pick the node's other ports free
                mgmt, stream, dist, epmd = free_ports(4)
            self.rabbitmq = LocalRabbitMQ(
                self.root / "rabbitmq", amqp_port=amqp_port, management_port=mgmt,
                stream_port=stream, dist_port=dist, epmd_port=epmd,
                nodename=f"liftline{amqp_port}@localhost",
            )
            self.rabbitmq.start()
            self.say(f"rabbitmq ready: {mask_url(s.amqp_url)} (pid {self.rabbitmq.pid}, "
                     f"management http://127.0.0.1:{mgmt})")
            if not s.management_url:  # the dashboard shows the node's memory, disk, alarms
                self.settings = s = s.replace(management_url=self.rabbitmq.management_url)
        if self.reuse_redis:
            self.say(f"redis: using {mask_url(s.redis_url)}")
        elif self.redis_kind == "sentinel":
            self._start_redis_sentinel()
        elif self.redis_kind == "cluster":
            self._start_redis_cluster()
        else:
            self.redis = LocalRedis(self.root / "redis", port=_port(s.redis_url, 6380))
            self.redis.start()
            self.say(f"redis ready: {mask_url(s.redis_url)} (pid {self.redis.pid})")

    def _start_rabbit_cluster(self) -> None:
        """A RabbitMQ cluster of ``rabbitmq_nodes`` nodes; every child gets the node list."""
        from liftline.servers.base import free_ports
        from liftline.servers.cluster import LocalRabbitCluster

        n = self.rabbitmq_nodes
        base = _port(self.settings.amqp_url, 5673)
        if base == 5673:  # the usual ports, one up per node: 5673, 5674, 5675 …
            ports = [(5673 + i, 15673 + i, 5553 + i, 25673 + i) for i in range(n)]
            epmd = 4370
        else:  # management at AMQP + 10000 where it fits (where status looks by default)
            flat = free_ports(4 * n)
            ports = [(base + i, base + i + 10000 if base + i + 10000 < 65536 else flat[4 * i],
                      flat[4 * i + 1], flat[4 * i + 2]) for i in range(n)]
            epmd = flat[-1]
        self.rabbit_cluster = LocalRabbitCluster(self.root / "rabbitmq-cluster", size=n,
                                                 epmd_port=epmd, ports=ports)
        began = time.monotonic()
        self.rabbit_cluster.start()
        self.settings = self.settings.replace(amqp_url=self.rabbit_cluster.amqp_url,
                                              management_url=self.rabbit_cluster.management_url)
        pids = ", ".join(str(pid) for pid in self.rabbit_cluster.running_pids())
        self.say(f"rabbitmq cluster ready: {n} nodes in {time.monotonic() - began:.0f}s "
                 f"(pids {pids}; management http://127.0.0.1:{ports[0][1]})")
        # The local nodes' own guest login: printed whole, so that it can be pasted.
        self.say(f"  export LIFTLINE_AMQP_URL={self.settings.amqp_url}")

    def _redis_ports(self, count: int, offset: int = 0) -> list[int]:
        """``count`` ports from the Redis URL's port (6380 by default) + ``offset`` up,
        each free one taken where that runs past 65535."""
        from liftline.servers.base import free_ports

        base = _port(self.settings.redis_url, 6380) + offset
        spare = free_ports(count)
        return [base + i if base + i < 65536 else spare[i] for i in range(count)]

    def _start_redis_sentinel(self) -> None:
        """A primary and a replica (6380, 6381) and 3 Sentinels (26380-26382), data in
        redis-sentinel/; every child gets the Sentinel URL."""
        from liftline.servers.sentinel import LocalSentinelSet

        self.redis_sentinels = group = LocalSentinelSet(
            self.root / "redis-sentinel", redis_ports=self._redis_ports(2),
            sentinel_ports=self._redis_ports(3, offset=20000))
        began = time.monotonic()
        group.start()
        self.settings = self.settings.replace(redis_url=group.url)
        primary = group.primary_port()
        replicas = [p for p in group.redis_ports if p != primary]
        pids = ", ".join(str(pid) for pid in group.running_pids())
        self.say(f"redis sentinel ready in {time.monotonic() - began:.0f}s: primary "
                 f"127.0.0.1:{primary}, replica {', '.join(f'127.0.0.1:{p}' for p in replicas)}"
                 f", sentinels {', '.join(str(p) for p in group.sentinel_ports)} (pids {pids})")
        self.say(f"  export LIFTLINE_REDIS_URL={group.url}")

    def _start_redis_cluster(self) -> None:
        """A Redis Cluster of 3 masters (6380-6382, bus on +10000), data in redis-cluster/."""
        from liftline.servers.redis_cluster import LocalRedisCluster

        self.redis_cluster = group = LocalRedisCluster(self.root / "redis-cluster",
                                                       ports=self._redis_ports(3))
        began = time.monotonic()
        group.start()
        self.settings = self.settings.replace(redis_url=group.url)
        pids = ", ".join(str(pid) for pid in group.running_pids())
        self.say(f"redis cluster ready in {time.monotonic() - began:.0f}s: 3 masters on "
                 f"{', '.join(str(p) for p in group.ports)} (pids {pids})")
        self.say(f"  export LIFTLINE_REDIS_URL={group.url}")

    def _prepare_cluster(self) -> None:
        bootstrap.prepare(self.settings, name="liftline-up")
        self.say(f"topology ready: cluster {self.settings.cluster!r}, "
                 f"{self.settings.partitions} partition streams")

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "liftline", "worker", "-v"]
        if self.app:
            argv += ["--app", self.app]
        proc = spawn(argv, env=self.settings.child_env(),
                     log_path=self.root / "logs" / "workers.log")
        self.procs.append(proc)
        return proc

    def _wait_workers(self, timeout_s: float = 60.0) -> None:
        client = connect(self.settings.redis_url)
        keys = Keys(self.settings.cluster)
        deadline = time.monotonic() + timeout_s
        try:
            pending = {p.pid for p in self.procs}
            while pending and time.monotonic() < deadline:
                for member in client.smembers(keys.members):
                    pid = client.hget(keys.member(member.decode()), "pid")
                    if pid is not None and int(pid) in pending:
                        pending.discard(int(pid))
                        self.say(f"worker ready: {member.decode()} (pid {int(pid)})")
                for proc in self.procs:
                    if proc.poll() is not None:
                        raise ServerError(f"worker pid {proc.pid} exited with {proc.returncode};"
                                          f" see {self.root / 'logs' / 'workers.log'}")
                time.sleep(0.1)
        finally:
            client.close()
        if pending:
            raise ServerError(f"workers {sorted(pending)} did not register within {timeout_s}s")

    # -- run / stop -----------------------------------------------------------
    def run_forever(self) -> None:
        """Supervise until SIGINT/SIGTERM: a worker that dies is started again."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        while not self._stop:
            for proc in list(self.procs):
                if proc.poll() is not None:
                    self.say(f"worker pid {proc.pid} exited with {proc.returncode}; restarting")
                    self.procs.remove(proc)
                    self._spawn_worker()
            if self.autoscaler is not None and not self.autoscaler.alive():
                self.say(f"autoscaler pid {self.autoscaler.pid} exited; restarting")
                self.autoscaler.start()
            if self.ingest is not None and not self.ingest.alive():
                self.say(f"ingest pid {self.ingest.pid} exited; restarting")
                self.ingest.start()
            time.sleep(0.2)

    def _on_signal(self, *_args: object) -> None:
        self._stop = True

    def stop(self) -> None:
        """Stop ingest and workers (SIGTERM, then SIGKILL after 30 s), then the servers."""
        if self.ingest is not None:
            self.ingest.stop()
            self.say("ingest stopped")
        if self.autoscaler is not None:
            self.autoscaler.stop()  # it stops its workers gracefully first
            self.say("autoscaler and its workers stopped")
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.procs:
            self.say("workers stopped")
        errors: list[str] = []
        servers = (("redis", self.redis), ("redis sentinel", self.redis_sentinels),
                   ("redis cluster", self.redis_cluster), ("rabbitmq", self.rabbitmq),
                   ("rabbitmq cluster", self.rabbit_cluster))
        for name, server in servers:
            if server is None:
                continue
            try:
                server.stop()
                self.say(f"{name} stopped")
            except LiftlineError as exc:
                errors.append(f"{name}: {exc}")
        if self._lock_file is not None:
            self._lock_file.close()
        if errors:
            raise ServerError("; ".join(errors))
