"""`liftline up --redis-sentinel` and `--redis-cluster`: the Redis the stack prints is
the one it uses, and Ctrl-C stops every process it started.

The stack uses the session's RabbitMQ (LIFTLINE_AMQP_URL, as a user with a broker of
their own would) and starts its Redis from the system binaries. A write through the
stack's ingest service is read back through the printed ``redis+sentinel://`` /
``redis+cluster://`` URL from Redis itself (so the workers flushed it there), and,
with Sentinel, also from the replica. SIGINT then stops the stack: exit 0, and no PID
it printed is alive.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from helpers import Up, clean_env, http_write_and_read, wait_until
from pipeline import REPO

from liftline.reads.redis_reader import RedisReader
from liftline.servers import redis_available
from liftline.servers.base import free_ports
from liftline.servers.process import pid_alive
from liftline.settings import Settings

pytestmark = pytest.mark.skipif(not redis_available(), reason="needs the system's redis-server")

# flag -> (the line it prints when ready, the URL scheme, how many Redis-side processes)
KINDS = {
    "--redis-sentinel": ("redis sentinel ready", "redis+sentinel://", 5),
    "--redis-cluster": ("redis cluster ready", "redis+cluster://", 3),
}


def printed_pids(out: str) -> list[int]:
    """Every PID in ``(pid N)`` and ``(pids A, B, …)`` of the stack's output."""
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    for group in re.findall(r"\(pids ([\d, ]+)\)", out):
        pids += [int(p) for p in group.split(",")]
    return pids


def read_through(settings: Settings, key: str) -> object:
    reader = RedisReader(settings)
    try:
        got = reader.get(key)
    finally:
        reader.close()
    return got.value if got.found else None


@pytest.mark.parametrize("flag", sorted(KINDS))
def test_up_with_a_replicated_redis_prints_the_url_it_uses_and_stops_on_ctrl_c(
        flag: str, endpoints, cluster_name: str, tmp_path: Path) -> None:
    ready, scheme, redis_procs = KINDS[flag]
    redis_port, ingest_port = free_ports(2)
    env = clean_env({"LIFTLINE_AMQP_URL": endpoints.amqp_url, "LIFTLINE_CLUSTER": cluster_name,
                     "LIFTLINE_PARTITIONS": "4"})
    data_dir = tmp_path / "data"
    up = Up([flag, f"--redis-url=redis://127.0.0.1:{redis_port}/0", "--data-dir",
             str(data_dir), "--ingest-port", str(ingest_port)], REPO, env=env)
    try:
        up.wait_for("liftline ready", 180)
        out = up.output()
        assert ready in out and "worker ready" in out and "ingest ready" in out, out
        exported = re.search(r"export LIFTLINE_REDIS_URL=(\S+)", out)
        assert exported, out
        url = exported.group(1)
        assert url.startswith(scheme), url
        server_line = next(line for line in out.splitlines() if ready in line)
        assert len(printed_pids(server_line)) == redis_procs, server_line
        if flag == "--redis-sentinel":  # the Sentinels on the Redis port + 20000 up
            assert f"primary 127.0.0.1:{redis_port}," in server_line, server_line
            assert url.count(",") == 2 and f"127.0.0.1:{redis_port + 20000}," in url, url
        else:  # the masters on the Redis port up
            assert url == "redis+cluster://" + ",".join(
                f"127.0.0.1:{redis_port + i}" for i in range(3)), url

        assert http_write_and_read(ingest_port, {"op": "incr", "key": "lift:21",
                                                 "value": 7}) == 7

        # The workers flushed it to the Redis behind the printed URL.
        printed = Settings.from_env({}, amqp_url=endpoints.amqp_url, redis_url=url,
                                    cluster=cluster_name, partitions=4)
        assert wait_until(lambda: read_through(printed, "lift:21") == 7, 30,
                          message="lift:21 flushed to the printed Redis")
        if flag == "--redis-sentinel":  # counted once the replica held it: it is there
            replica = int(re.search(r"replica 127\.0\.0\.1:(\d+)", server_line).group(1))
            assert replica != redis_port
            on_replica = printed.replace(redis_url=f"redis://127.0.0.1:{replica}/0")
            assert read_through(on_replica, "lift:21") == 7
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends; nothing else is sent
        code = up.proc.wait(90)
        up.reader.join(10)
        assert up.proc.stdout is not None
        up.proc.stdout.close()
    out = up.output()
    assert code == 0, out
    assert f"{ready.removesuffix(' ready')} stopped" in out, out
    pids = printed_pids(out)
    assert len(pids) >= redis_procs + 2, out  # the Redis processes, a worker, the ingest
    assert not [pid for pid in pids if pid_alive(pid)], out
