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
