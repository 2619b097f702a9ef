"""Every read-only CLI command with RabbitMQ, Redis or both out of reach.

"Out of reach" twice over: a port where nothing listens (refused at once), and a
server that accepts connections and then never answers (the harder case: only a
timeout ends it). Each command must end within its bound with one line on
stderr that says what it could not reach, and the exit code documented for it;
no Python traceback is ever shown.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_liftline

from liftline.servers import Endpoints, free_port

REPO = Path(__file__).resolve().parents[2]
BOUND_S = 15.0  # the README's bound for a read-only command, plus process start-up

READ_ONLY = [
    ["status"],
    ["status", "--json"],
    ["get", "skier:812"],
    ["get", "skier:812", "--stale"],
    ["deadletters"],
    ["jobs", "stats"],
    ["jobs", "dead"],
]


class SilentServer:
    """Accepts TCP connections on loopback and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def run_cli(args: list[str], amqp_url: str, redis_url: str, cluster: str
            ) -> tuple[int, str, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTLINE_")}
    env.update(LIFTLINE_AMQP_URL=amqp_url, LIFTLINE_REDIS_URL=redis_url,
               LIFTLINE_CLUSTER=cluster, LIFTLINE_PARTITIONS="8",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    started = time.monotonic()
    proc = run_liftline(args, env=env, cwd=REPO, timeout=BOUND_S + 30)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def _check(args: list[str], rc: int, out: str, err: str, took: float,
           expect: set[int], names: str) -> None:
    shown = f"liftline {' '.join(args)} -> {rc} in {took:.1f}s\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err, shown
    assert took < BOUND_S, shown
    assert rc in expect, shown
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, shown
    assert names in errors[0].lower(), shown


def _dead_port() -> int:
    return free_port()


@pytest.mark.parametrize("how", ["refused", "silent"])
def test_rabbitmq_out_of_reach(endpoints: Endpoints, cluster_name: str, how: str,
                               silent: SilentServer) -> None:
    port = silent.port if how == "silent" else _dead_port()
    amqp = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    for args in READ_ONLY:
        rc, out, err, took = run_cli(args, amqp, endpoints.redis_url, cluster_name)
        if args[0] == "status":
            # Redis still answers: the partial snapshot is printed, exit 12.
            _check(args, rc, out, err, took, {12}, "rabbitmq")
            if "--json" in args:
                snapshot = json.loads(out)
                assert [u["server"] for u in snapshot["unreachable"]] == ["rabbitmq"]
                assert len(snapshot["partition_state"]) == 8
        elif args == ["get", "skier:812", "--stale"] or args in (["deadletters"],
                                                                 ["jobs", "stats"]):
            assert rc in (0, 6), (args, rc, out, err)  # Redis alone serves these
            assert "Traceback" not in out + err and took < BOUND_S
        else:
            _check(args, rc, out, err, took, {4}, "rabbitmq")


@pytest.mark.parametrize("how", ["refused", "silent"])
def test_redis_out_of_reach(endpoints: Endpoints, cluster_name: str, how: str,
                            silent: SilentServer) -> None:
    port = silent.port if how == "silent" else _dead_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    for args in READ_ONLY:
        rc, out, err, took = run_cli(args, endpoints.amqp_url, redis_url, cluster_name)
        if args[0] == "status":
            _check(args, rc, out, err, took, {12}, "redis")
            if "--json" in args:
                snapshot = json.loads(out)
                assert [u["server"] for u in snapshot["unreachable"]] == ["redis"]
        elif args == ["jobs", "dead"]:
            # The dead-letter queue is in RabbitMQ: it still answers.
            assert rc == 0 and "Traceback" not in out + err and took < BOUND_S, (rc, out, err)
        else:
            _check(args, rc, out, err, took, {5}, "redis")


def test_both_out_of_reach(cluster_name: str, silent: SilentServer) -> None:
    amqp = f"amqp://guest:guest@127.0.0.1:{_dead_port()}/%2F"
    redis_url = f"redis://127.0.0.1:{silent.port}/0"
    for args in READ_ONLY:
        rc, out, err, took = run_cli(args, amqp, redis_url, cluster_name)
        if args[0] == "status":
            _check(args, rc, out, err, took, {12}, "could not reach")
            if "--json" in args:
                snapshot = json.loads(out)
                assert sorted(u["server"] for u in snapshot["unreachable"]) == [
                    "rabbitmq", "redis"]
        else:
            _check(args, rc, out, err, took, {4, 5}, "")
