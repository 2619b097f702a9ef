"""A 3-master Redis Cluster from the system binaries, on 127.0.0.1, for tests.

Each server is a process of this object's (stopped by PID); ``redis-cli --cluster
create`` spreads the 16,384 slots over the three.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from liftline.servers.base import free_ports, wait_for_port
from liftline.servers.process import end_group, spawn_in_group

HOST = "127.0.0.1"


class RedisClusterSet:
    """Three cluster-enabled ``redis-server`` masters, no replicas."""

    def __init__(self, root: Path, masters: int = 3) -> None:
        self.root = root
        self.ports = free_ports(masters)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports)

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        for port in self.ports:
            data = self.root / f"node-{port}"
            data.mkdir(parents=True, exist_ok=True)
            argv = [binary, "--port", str(port), "--bind", HOST, "--dir", str(data),
                    "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                    "--save", "", "--appendonly", "no", "--logfile", ""]
            self.procs[port] = spawn_in_group(argv, None, self.root / f"{port}.log")
        for port in self.ports:
            wait_for_port(HOST, port, 20)
        deadline = time.monotonic() + 20
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                        *(f"{HOST}:{p}" for p in self.ports), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        while not all(self._state_ok(p) for p in self.ports):
            if time.monotonic() > deadline + 30:
                raise AssertionError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    @staticmethod
    def _state_ok(port: int) -> bool:
        client = redis.Redis(host=HOST, port=port, socket_timeout=1)
        try:
            return b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()

    def node_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot."""
        client = redis.Redis(host=HOST, port=self.ports[0], socket_timeout=1)
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        finally:
            client.close()
        raise AssertionError(f"no master holds the slot of {key!r}")

    def stop(self) -> None:
        for port, proc in list(self.procs.items()):
            end_group(proc, [], 10.0, f"cluster node on {port}")
        self.procs.clear()
