"""The servers a benchmark run uses, the machine it runs on, and per-process CPU/RSS."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.progress import say

REPO = Path(__file__).resolve().parents[1]
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchServers:
    """RabbitMQ + Redis for one run.

    ``LIFTLINE_BENCH_AMQP_URL`` and ``LIFTLINE_BENCH_REDIS_URL`` (and optionally
    ``LIFTLINE_BENCH_MANAGEMENT_URL``) name servers someone else runs; otherwise
    :class:`liftline.servers.local.LocalServers` starts both from the system
    binaries with their data in a temporary directory, and stops them (and
    removes the directory) on exit, also after an error or Ctrl-C.
    """

    def __init__(self) -> None:
        self.amqp_url = os.environ.get("LIFTLINE_BENCH_AMQP_URL", "")
        self.redis_url = os.environ.get("LIFTLINE_BENCH_REDIS_URL", "")
        self.management_url = os.environ.get("LIFTLINE_BENCH_MANAGEMENT_URL") or None
        self.external = bool(self.amqp_url and self.redis_url)
        self.tmp_dir: Path | None = None
        self._local: Any = None

    def __enter__(self) -> BenchServers:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="liftline-bench-"))
        if self.external:
            say(f"servers: using LIFTLINE_BENCH_* URLs ({_host_of(self.amqp_url)}, "
                f"{_host_of(self.redis_url)})")
            return
        from liftline.servers.local import LocalServers

        began = time.monotonic()
        say(f"servers: starting RabbitMQ and Redis under {self.tmp_dir}")
        self._local = LocalServers(self.tmp_dir / "servers")
        endpoints = self._local.start()
        self.amqp_url = endpoints.amqp_url
        self.redis_url = endpoints.redis_url
        self.management_url = endpoints.management_url
        say(f"servers: ready in {time.monotonic() - began:.1f}s")

    def stop(self) -> None:
        local, self._local = self._local, None
        # A second Ctrl-C must not leave the servers half stopped.
        saved = _ignore_signals()
        try:
            if local is not None:
                began = time.monotonic()
                say("servers: stopping RabbitMQ and Redis")
                local.stop()
                say(f"servers: stopped in {time.monotonic() - began:.1f}s")
        finally:
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
                self.tmp_dir = None
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    def server_pids(self) -> dict[str, int]:
        """PIDs of the servers this run started (for CPU accounting); {} when external."""
        if self._local is None:
            return {}
        out: dict[str, int] = {}
        node = self._local.rabbitmq.node_pid
        if node:
            out["rabbitmq"] = node
        if self._local.redis.pid:
            out["redis"] = self._local.redis.pid
        return out


def _ignore_signals() -> dict[int, Any]:
    """Ignore SIGINT and SIGTERM (main thread only); returns the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, signal.SIG_IGN)
            for signum in (signal.SIGINT, signal.SIGTERM)}


def _host_of(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)


# -- per-process figures ------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds that ``pid`` used so far (its threads included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in kB; {} if it is gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine used since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    # user nice system idle iowait irq softirq steal ...; busy = all but idle and iowait.
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLK_TCK


def background_cores(interval_s: float = 1.0, ignore: tuple[int, ...] = ()) -> float:
    """Cores busy over ``interval_s`` with processes other than this one and ``ignore``."""
    mine = (os.getpid(), *ignore)
    m0, c0 = machine_busy_seconds(), sum(cpu_seconds(p) or 0.0 for p in mine)
    time.sleep(interval_s)
    m1, c1 = machine_busy_seconds(), sum(cpu_seconds(p) or 0.0 for p in mine)
    return max(0.0, ((m1 - m0) - (c1 - c0)) / interval_s)


class CpuMeter:
    """CPU used by a few named processes between :meth:`start` and :meth:`stop`, and by
    everything else on the machine ("others": other users' tests and servers)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = 0.0
        self._m0 = 0.0
        self._c0: dict[str, float] = {}

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self._c0[name] = cpu_seconds(pid) or 0.0

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._m0 = machine_busy_seconds()
        self._c0 = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, Any]:
        """{name: cores used on average} over the interval, plus the interval itself."""
        wall = max(time.monotonic() - self._t0, 1e-9)
        out: dict[str, Any] = {"wall_s": round(wall, 2)}
        ours = 0.0
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            if now is not None:
                used = now - self._c0.get(name, 0.0)
                ours += used
                out[name] = round(used / wall, 2)
        machine_used = machine_busy_seconds() - self._m0
        out["others"] = round(max(0.0, machine_used - ours) / wall, 2)
        out["machine"] = round(machine_used / wall, 2)
        return out


# -- machine and versions -----------------------------------------------------
def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "hostname": platform.node(),
    }


def versions(servers: BenchServers) -> dict[str, str]:
    import msgpack
    import pika
    import redis

    out = {
        "python": platform.python_version(),
        "pika": pika.__version__,
        "redis-py": redis.__version__,
        "msgpack": ".".join(str(x) for x in msgpack.version),
        "hiredis": _hiredis_version(),
        "rabbitmq": _rabbitmq_version(servers),
        "redis": _redis_version(servers),
        "redis-server --version": _redis_binary_version(),
        "liftline": _liftline_version(),
    }
    return out


def _hiredis_version() -> str:
    try:
        import hiredis

        return str(getattr(hiredis, "__version__", "present"))
    except ImportError:
        return "absent"


def _rabbitmq_version(servers: BenchServers) -> str:
    if servers.management_url:
        from liftline.queue.management import management_get

        overview = management_get(servers.management_url, "/api/overview")
        if isinstance(overview, dict) and overview.get("rabbitmq_version"):
            return f"{overview['rabbitmq_version']} (Erlang {overview.get('erlang_version', '?')})"
    try:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(servers.amqp_url))
        try:
            props = conn._impl.server_properties  # noqa: SLF001 - only way pika exposes it
            version = props.get("version", b"?")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            conn.close()
    except Exception as exc:  # a version string must not end the run
        return f"unknown ({exc})"


def _redis_version(servers: BenchServers) -> str:
    server = "unknown"
    try:
        import redis

        client = redis.Redis.from_url(servers.redis_url)
        try:
            server = str(client.info("server").get("redis_version", "unknown"))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001
        server = f"unknown ({exc})"
    binary = ""
    if shutil.which("redis-server"):
        try:
            text = subprocess.run(["redis-server", "--version"], capture_output=True,
                                  text=True, timeout=10, check=False).stdout
            match = re.search(r"v=(\S+)", text)
            binary = match.group(1) if match else text.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    if binary and binary != server:
        return f"{server} (redis-server --version: {binary})"
    return server


def _redis_binary_version() -> str:
    if not shutil.which("redis-server"):
        return "not installed"
    try:
        return subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"


def _liftline_version() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "liftline"], capture_output=True, text=True, timeout=10,
                               check=False)
        commit = head.stdout.strip() or "?"
        return f"git {commit}{' + uncommitted changes in liftline/' if dirty.stdout else ''}"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command_line() -> str:
    return " ".join(["python -m benchmarks.run", *sys.argv[1:]]).strip()
