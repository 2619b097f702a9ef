"""A Redis primary, its replicas and three Sentinels from the system binaries, on 127.0.0.1.

For the fault tests of a replicated Redis: each server is a process of this
object's, stopped (or SIGKILLed) by PID; everything lives in one directory.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from liftline.servers.base import free_ports, port_answers
from liftline.servers.process import end_group, kill_group, log_tail, spawn_in_group

HOST = "127.0.0.1"
SERVICE = "liftline"


class SentinelSet:
    """``replicas + 1`` Redis servers (the first starts as primary) and 3 Sentinels."""

    def __init__(self, root: Path, *, replicas: int = 2, down_after_ms: int = 1000) -> None:
        self.root = root
        self.redis_ports = free_ports(replicas + 1)
        self.sentinel_ports = free_ports(3)
        self.down_after_ms = down_after_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _log(self, port: int) -> Path:
        return self.root / f"{port}.log"

    def start_redis(self, port: int, *, replica_of: int | None = None) -> None:
        data = self.root / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(port),
                "--bind", HOST, "--dir", str(data), "--save", "", "--appendonly", "yes",
                "--logfile", ""]
        if replica_of is not None:
            argv += ["--replicaof", HOST, str(replica_of)]
        self.procs[port] = spawn_in_group(argv, None, self._log(port))
        self._wait_port(port)

    def start(self) -> None:
        primary, *replicas = self.redis_ports
        self.start_redis(primary)
        for port in replicas:
            self.start_redis(port, replica_of=primary)
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {self.root}\n"
                f"sentinel monitor {SERVICE} {HOST} {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 2\n")
            argv = [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"]
            self.procs[port] = spawn_in_group(argv, None, self._log(port))
            self._wait_port(port)
        deadline = time.monotonic() + 30
        while self.replicas_online(primary) < len(replicas):
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas did not sync\n{log_tail(self._log(primary))}")
            time.sleep(0.1)

    def _wait_port(self, port: int) -> None:
        deadline = time.monotonic() + 20
        while not port_answers(HOST, port):
            proc = self.procs[port]
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server on {port} did not start\n{log_tail(self._log(port))}")
            time.sleep(0.05)

    def primary(self) -> int:
        """The port the Sentinels now name as primary."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(host=HOST, port=port, socket_timeout=1)
                addr = client.sentinel_get_master_addr_by_name(SERVICE)
                client.close()
            except redis.RedisError:
                continue
            if addr:
                return int(addr[1])
        raise AssertionError("no Sentinel names a primary")

    def replicas_online(self, port: int) -> int:
        client = redis.Redis(host=HOST, port=port, socket_timeout=1)
        try:
            info = client.info("replication")
        finally:
            client.close()
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")

    def linked_replica(self, port: int) -> bool:
        """Whether the server on ``port`` is a replica whose link to its primary is up."""
        client = redis.Redis(host=HOST, port=port, socket_timeout=1)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def kill(self, port: int) -> None:
        """SIGKILL one server, as a crash would."""
        proc = self.procs.pop(port)
        kill_group(proc, [], f"Redis on {port}")

    def stop(self) -> None:
        for port, proc in list(self.procs.items()):
            end_group(proc, [], 10.0, f"server on {port}")
        self.procs.clear()
