"""A RabbitMQ cluster of several nodes from the system binaries, on one machine.

Each node is a :class:`~liftline.servers.local.LocalRabbitMQ` with a data directory,
ports and node name of its own (``r1@localhost``, ``r2@localhost``…); all of them
share one Erlang cookie (written into each node's ``HOME`` before its first boot)
and one epmd port. The first node boots alone; the others boot at the same time,
each finding the first through classic-config peer discovery, which joins a blank
node to its peer at first boot (no ``stop_app`` / ``join_cluster`` round). A node
that was a member once rejoins by itself when it starts again.

Nodes are stopped by the PIDs this object started, and the shared epmd last, with
``epmd -port P -kill``.

Given ``hosts`` (and ``launchers``), each node lives at an address of its own instead,
e.g. in a network namespace a test made (``ip netns exec NS`` as its launcher): its
name becomes ``r1@10.x.y.z`` (long names), and it runs its own epmd on that address,
on the port all the nodes share. ``erl_args`` go to every node's Erlang VM (a lower
``-kernel net_ticktime``), ``partition_handling`` into its ``rabbitmq.conf``
(``cluster_partition_handling``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from liftline.errors import ServerError
from liftline.queue.management import management_get
from liftline.servers.base import free_ports, stop_each
from liftline.servers.local import LocalRabbitMQ, stop_epmd

log = logging.getLogger(__name__)


class LocalRabbitCluster:
    """``size`` RabbitMQ nodes forming one cluster; ``data_dir/r1``, ``data_dir/r2``…

    ``ports`` gives, per node, (amqp, management, stream, dist); left ``None``, free
    ports are picked at construction (kept across stop and start).
    """

    def __init__(self, data_dir: Path, *, size: int = 3, epmd_port: int | None = None,
                 ports: list[tuple[int, int, int, int]] | None = None,
                 prefix: str = "r", hosts: list[str] | None = None,
                 launchers: list[tuple[str, ...]] | None = None, erl_args: str = "",
                 partition_handling: str | None = None) -> None:
        if size < 1:
            raise ServerError("a cluster needs at least one node")
        if hosts is not None and len(hosts) != size:
            raise ServerError(f"{len(hosts)} hosts for a cluster of {size} nodes")
        self.data_dir = Path(data_dir)
        if ports is None:
            flat = free_ports(4 * size + (epmd_port is None))
            if epmd_port is None:
                epmd_port = flat.pop()
            ports = [tuple(flat[4 * i:4 * i + 4]) for i in range(size)]  # type: ignore[misc]
        assert epmd_port is not None and len(ports) == size
        self.epmd_port = epmd_port
        cookie = self._cookie()
        where = hosts or ["localhost"] * size
        first = f"{prefix}1@{where[0]}"
        common = (f"cluster_partition_handling = {partition_handling}\n"
                  if partition_handling else "")
        self.nodes: list[LocalRabbitMQ] = []
        for i, (amqp, mgmt, stream, dist) in enumerate(ports, start=1):
            name = f"{prefix}{i}@{where[i - 1]}"
            # The first node boots alone; every other one joins it at its first boot.
            extra = common if i == 1 else common + (
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"cluster_formation.classic_config.nodes.1 = {first}\n"
            )
            placed: dict[str, Any] = {}
            if hosts is not None:
                placed = dict(host=hosts[i - 1],
                              launcher=launchers[i - 1] if launchers else ())
            self.nodes.append(LocalRabbitMQ(
                self.data_dir / f"{prefix}{i}", amqp_port=amqp, management_port=mgmt,
                stream_port=stream, dist_port=dist, epmd_port=epmd_port, nodename=name,
                extra_config=extra, cookie=cookie, manage_epmd=False, erl_args=erl_args,
                **placed))

    def _cookie(self) -> str:
        """The cluster's Erlang cookie: kept in the data directory across restarts."""
        path = self.data_dir / "erlang.cookie"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(secrets.token_hex(16).upper())
            path.chmod(0o600)
        return path.read_text().strip()

    # -- where -------------------------------------------------------------
    @property
    def amqp_urls(self) -> list[str]:
        return [node.amqp_url for node in self.nodes]

    @property
    def amqp_url(self) -> str:
        """Every node's AMQP URL, comma-separated (liftline's node list)."""
        return ",".join(self.amqp_urls)

    @property
    def management_url(self) -> str:
        """Every node's management URL, comma-separated."""
        return ",".join(node.management_url for node in self.nodes)

    # -- start / stop ------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> None:
        """Start every node not running and return once all run as one cluster.

        Raises ServerError (the nodes started here are stopped again) otherwise.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        try:
            first, rest = self.nodes[0], self.nodes[1:]
            if first.pid is None:
                first.start(timeout_s, require_queues=False)
            self._start_together([n for n in rest if n.pid is None], deadline)
            self.wait_running(len(self.nodes), deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        log.info("RabbitMQ cluster of %d nodes ready in %.1fs", len(self.nodes),
                 time.monotonic() - began)

    def _start_together(self, nodes: list[LocalRabbitMQ], deadline: float) -> None:
        errors: list[BaseException] = []

        def boot(node: LocalRabbitMQ) -> None:
            try:
                node.start(max(1.0, deadline - time.monotonic()), require_queues=False)
            except BaseException as exc:  # reported below, on the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(n,), daemon=True) for n in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic()) + 15)
        if errors:
            raise errors[0]

    def start_node(self, index: int, timeout_s: float = 90.0) -> None:
        """Start node ``index`` (0-based) again, e.g. after :meth:`kill_node`, and
        return once the cluster reports it running."""
        node = self.nodes[index]
        node.start(timeout_s, require_queues=False)
        self.wait_running(len(self.running_pids()), timeout_s)

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based), as a crash would."""
        self.nodes[index].kill()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every node by its PID (SIGTERM, then SIGKILL), then the shared epmd."""
        try:
            stop_each(reversed(self.nodes), timeout_s)
        finally:
            self._stop_epmds()

    def kill(self) -> None:
        """SIGKILL every node, then end the epmd: the fast teardown for throwaway data."""
        for node in self.nodes:
            node.kill()
        self._stop_epmds()

    def _stop_epmds(self) -> None:
        """The shared epmd, or each node's own when the nodes live at addresses apart."""
        for host, launcher in dict.fromkeys((n.host, n.launcher) for n in self.nodes):
            stop_epmd(self.epmd_port, host, launcher)

    # -- state -------------------------------------------------------------
    def running_pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

    def nodes_info(self) -> list[dict[str, Any]]:
        """``/api/nodes`` (name, running) from the first node whose management answers."""
        for node in self.nodes:
            if node.pid is None:
                continue
            got = management_get(node.management_url, "/api/nodes?columns=name,running")
            if isinstance(got, list):
                return got
        return []

    def running_names(self) -> set[str]:
        return {n["name"] for n in self.nodes_info() if n.get("running")}

    def wait_running(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` nodes are running members of the cluster."""
        deadline = time.monotonic() + max(timeout_s, 1.0)
        while True:
            running = self.running_names()
            if len(running) >= count:
                return
            if time.monotonic() >= deadline:
                raise ServerError(f"RabbitMQ cluster: {len(running)} of {count} nodes running "
                                  f"({sorted(running)}) after {timeout_s:.0f}s")
            time.sleep(0.25)

    def index_of(self, nodename: str) -> int:
        """The index of the node called ``nodename`` (``r2@localhost`` → 1)."""
        for i, node in enumerate(self.nodes):
            if node.nodename == nodename:
                return i
        raise ServerError(f"no node {nodename!r} in this cluster")

    def sync_to_disk(self) -> None:
        """:meth:`LocalRabbitMQ.sync_to_disk` on every running node."""
        for node in self.nodes:
            if node.pid is not None:
                node.sync_to_disk()
