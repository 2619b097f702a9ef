"""A Redis Cluster of masters from the system binaries, on 127.0.0.1.

Behind ``liftline up --redis-cluster`` and the Redis Cluster tests. Each node is a
:class:`~liftline.servers.local_redis.LocalRedis` in cluster mode with its data
(append-only file and ``nodes.conf``) in ``data_dir/node-<port>``, stopped by its
PID. On the first start ``redis-cli --cluster create`` spreads the 16,384 slots
over the masters; started again in the same directory, the nodes find each other
from their ``nodes.conf`` and nothing is created twice.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

import redis

from liftline.errors import ServerError
from liftline.servers.base import free_ports, stop_each
from liftline.servers.local_redis import HOST, LocalRedis

log = logging.getLogger(__name__)


class LocalRedisCluster:
    """``masters`` cluster-enabled ``redis-server`` nodes, no replicas.

    ``ports`` left ``None`` are picked free at construction; each node also uses
    its port + 10,000 for the cluster bus. :attr:`url` is the ``redis+cluster://`` URL.
    """

    def __init__(self, data_dir: Path, *, masters: int = 3, ports: list[int] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.ports = ports or free_ports(masters)
        self.nodes = [LocalRedis(self.data_dir / f"node-{port}", port=port, cluster=True)
                      for port in self.ports]

    @property
    def url(self) -> str:
        """``redis+cluster://`` and every node: what liftline is given."""
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every node, create the cluster if it was never created, and return
        once every node reports ``cluster_state:ok``.

        Raises ServerError (the nodes are stopped again) otherwise.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        try:
            for node in self.nodes:
                node.start(max(1.0, deadline - time.monotonic()))
            if all(self._info(p).get("cluster_slots_assigned") == "0" for p in self.ports):
                self._create(max(5.0, deadline - time.monotonic()))
            while not all(self._info(p).get("cluster_state") == "ok" for p in self.ports):
                if time.monotonic() >= deadline:
                    states = {p: self._info(p).get("cluster_state") for p in self.ports}
                    raise ServerError(f"Redis Cluster not ok after {timeout_s:.0f}s: {states}")
                time.sleep(0.1)
        except BaseException:
            self.stop(timeout_s=5.0)
            raise
        log.info("Redis Cluster of %d masters ready in %.1fs", len(self.ports),
                 time.monotonic() - began)

    def _create(self, timeout_s: float) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ServerError("redis-cli is not installed (it creates the Redis Cluster)")
        done = subprocess.run([cli, "--cluster", "create", *(f"{HOST}:{p}" for p in self.ports),
                               "--cluster-yes"], capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        if done.returncode != 0:
            raise ServerError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")

    @staticmethod
    def _info(port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of the node on ``port`` as a dict ({} if it does not answer)."""
        client = redis.Redis(host=HOST, port=port, socket_timeout=1)
        try:
            text = client.execute_command("CLUSTER", "INFO")
        except redis.RedisError:
            return {}
        finally:
            client.close()
        if isinstance(text, dict):  # a redis-py that parses the reply itself
            return {str(k): str(v) for k, v in text.items()}
        if isinstance(text, bytes):
            text = text.decode()
        return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop every node by its PID (SIGTERM, then SIGKILL); idempotent."""
        stop_each(self.nodes, timeout_s)

    def kill(self) -> None:
        """SIGKILL every node: the fast teardown for throwaway data."""
        for node in self.nodes:
            node.kill()

    def running_pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

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
        raise ServerError(f"no master holds the slot of {key!r}")
