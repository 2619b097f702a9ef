"""A second host on this machine: a network namespace joined by a veth pair.

The test's own namespace and addresses (10.231.<n>.1 on the host side, .2 inside),
removed afterwards. Servers that listen on 127.0.0.1 are reached from inside
through :class:`Forwarder` (TCP relays on the host end of the veth), so cutting
the link cuts the namespace off from them, silently, as a lost host would be:
no reset, packets just stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator

from liftline.servers.base import free_port


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    name = f"llprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


class Namespace:
    """``ip netns`` ``ll<hex>`` with a veth to the host; :meth:`cut` / :meth:`heal`."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"ll{tag}"
        self.host_if, self.ns_if = f"llh{tag}", f"lln{tag}"
        subnet = 1 + secrets.randbelow(250)
        self.host_ip, self.ns_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.run_ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.run_ip("link", "set", self.ns_if, "up")
        self.run_ip("link", "set", "lo", "up")

    def run_ip(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Take the link down: from now on nothing passes either way."""
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


class Forwarder:
    """TCP relays: ``listen_ip:port`` → ``127.0.0.1:target`` for each target, on a thread."""

    def __init__(self, listen_ip: str, targets: list[int]) -> None:
        self.listen_ip = listen_ip
        self.ports = {target: free_port() for target in targets}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="netns-forwarder")
        self._servers: list[asyncio.base_events.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        for target, port in self.ports.items():
            future = asyncio.run_coroutine_threadsafe(self._serve(port, target), self._loop)
            self._servers.append(future.result(10))

    async def _serve(self, port: int, target: int) -> asyncio.base_events.Server:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                writer.close()
                return
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return await asyncio.start_server(relay, self.listen_ip, port)

    def stop(self) -> None:
        """Close the listeners and every relayed connection, then the loop."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


@contextlib.contextmanager
def second_host(targets: list[int]) -> Iterator[tuple[Namespace, Forwarder]]:
    """A namespace and relays into it for ``targets`` (local ports); removed after."""
    ns = Namespace()
    ns.create()
    relay = Forwarder(ns.host_ip, targets)
    try:
        relay.start()
        yield ns, relay
    finally:
        relay.stop()
        ns.remove()


class Mesh:
    """``size`` hosts on this machine, each a namespace with one address (on its ``lo``),
    every pair joined by a veth of its own and each host joined to this one by another.

    No bridge and no forwarding: each address is one hop from every other, over a
    point-to-point link with a /32 route, so :meth:`cut` can take a host's links to
    the others down while the link from here stays up (the test's clients still reach
    it: what a node cut off from its peers, not from its clients, looks like).
    Addresses: ``10.<a>.<b>.1`` here, ``10.<a>.<b>.11``, ``.12``… for the hosts.
    """

    def __init__(self, size: int = 3) -> None:
        tag = secrets.token_hex(3)
        self.names = [f"llm{tag}{i}" for i in range(size)]
        net = _free_net()
        self.here = f"{net}.1"
        self.addresses = [f"{net}.{11 + i}" for i in range(size)]
        # (from, to) -> the interface in ``from``'s namespace that leads to ``to``;
        # -1 is this (the root) namespace.
        self.links: dict[tuple[int, int], str] = {}
        for i in range(size):
            self.links[(-1, i)], self.links[(i, -1)] = f"llm{tag}r{i}", f"llm{tag}h{i}"
            for j in range(i + 1, size):
                self.links[(i, j)], self.links[(j, i)] = f"llm{tag}{i}{j}", f"llm{tag}{j}{i}"
        self._made: list[str] = []

    def argv(self, i: int) -> tuple[str, ...]:
        """The launcher of host ``i``: what goes before a command to run it there."""
        return ("ip", "netns", "exec", self.names[i])

    def _in(self, i: int, *args: str) -> None:
        _ip(*(("-n", self.names[i]) if i >= 0 else ()), *args)

    def _address(self, i: int) -> str:
        return self.here if i < 0 else self.addresses[i]

    def create(self) -> None:
        """Make the namespaces and links (undone by :meth:`remove`, also if this fails)."""
        try:
            for i, name in enumerate(self.names):
                _ip("netns", "add", name)
                self._made.append(name)
                self._in(i, "link", "set", "lo", "up")
                self._in(i, "addr", "add", f"{self.addresses[i]}/32", "dev", "lo")
            for (a, b), dev in self.links.items():
                if a < b:  # one veth per pair, made here, each end moved to its side
                    peer = self.links[(b, a)]
                    _ip("link", "add", dev, "type", "veth", "peer", "name", peer)
                    for side, name in ((a, dev), (b, peer)):
                        if side >= 0:
                            _ip("link", "set", name, "netns", self.names[side])
            self.here_up()
            for (a, b), dev in self.links.items():
                self._in(a, "link", "set", dev, "up")
                self._route(a, b)
        except BaseException:
            self.remove()
            raise

    def here_up(self) -> None:
        for i in range(len(self.names)):
            _ip("addr", "replace", f"{self.here}/32", "dev", self.links[(-1, i)])

    def _route(self, a: int, b: int) -> None:
        self._in(a, "route", "replace", f"{self._address(b)}/32", "dev", self.links[(a, b)],
                 "src", self._address(a))

    def cut(self, i: int) -> None:
        """Take every link between host ``i`` and the other hosts down (both ends): from
        now on nothing passes between them, silently (no reset); the link from here stays."""
        for j in range(len(self.names)):
            if j != i:
                self._in(i, "link", "set", self.links[(i, j)], "down")
                self._in(j, "link", "set", self.links[(j, i)], "down")

    def heal(self, i: int) -> None:
        """Bring host ``i``'s links up again, with their routes (a link going down drops them)."""
        for j in range(len(self.names)):
            if j != i:
                for a, b in ((i, j), (j, i)):
                    self._in(a, "link", "set", self.links[(a, b)], "up")
                    self._route(a, b)

    def pids(self) -> list[int]:
        """PIDs of the processes still running in the namespaces (all of them this test's)."""
        out: list[int] = []
        for name in self._made:
            got = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            out += [int(p) for p in got.stdout.split()]
        return out

    def remove(self) -> None:
        # Deleting a namespace deletes the veth ends in it, and with them their peers.
        for name in self._made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        for i in range(len(self.names)):
            subprocess.run(["ip", "link", "del", self.links[(-1, i)]], capture_output=True)
        self._made = []


def _free_net() -> str:
    """A ``10.a.b`` /24 no interface or route here uses."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout + \
        subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    while True:
        net = f"10.{100 + secrets.randbelow(150)}.{secrets.randbelow(256)}"
        if f"{net}." not in used:
            return net
