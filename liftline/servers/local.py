"""RabbitMQ and Redis from the system's binaries, run as the current user.

No system service is touched: each server keeps everything (data, logs,
config, Erlang cookie) in its own data directory, listens on 127.0.0.1 only (or an
address of its own in a network namespace a test made),
and runs in a process group of its own, so that it and only it can be
signalled. A data directory survives ``stop()``: starting again on it keeps
durable queues, streams and the Redis append-only file.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from liftline.errors import ServerError
from liftline.queue.management import management_get
from liftline.servers.base import (
    Endpoints,
    ServerProvider,
    amqp_answers,
    free_ports,
    management_api_answers,
    port_answers,
)
from liftline.servers.local_redis import LocalRedis as LocalRedis  # public here too
from liftline.servers.process import (  # noqa: F401 - pid_alive, log_tail are public here
    end_group,
    kill_group,
    log_tail,
    pid_alive,
    spawn_in_group,
)

log = logging.getLogger(__name__)

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
# The /usr/sbin wrappers switch to the rabbitmq user; these run as the caller.
RABBITMQ_SERVER = RABBITMQ_BIN / "rabbitmq-server"
RABBITMQCTL = RABBITMQ_BIN / "rabbitmqctl"
ENABLED_PLUGINS = "[rabbitmq_management,rabbitmq_stream].\n"
HOST = "127.0.0.1"


def rabbitmq_available() -> bool:
    """True if the RabbitMQ server and rabbitmqctl binaries are installed."""
    return os.access(RABBITMQ_SERVER, os.X_OK) and os.access(RABBITMQCTL, os.X_OK)


def redis_available() -> bool:
    """True if a ``redis-server`` binary is on PATH."""
    return shutil.which("redis-server") is not None


class LocalRabbitMQ:
    """One RabbitMQ node (management + stream plugins) living in ``data_dir``.

    Everything the node needs is passed through its environment: node name,
    Mnesia and log directories, config file, plugin list, Erlang distribution
    and epmd ports, and ``HOME`` (which holds the Erlang cookie that
    :meth:`ctl` needs too). The node starts its own epmd on ``epmd_port``;
    :meth:`stop` ends that epmd again if this object started it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        amqp_port: int,
        management_port: int,
        stream_port: int,
        dist_port: int,
        epmd_port: int,
        nodename: str = "liftline@localhost",
        log_file: Path | None = None,
        extra_config: str = "",
        cookie: str | None = None,
        manage_epmd: bool = True,
        host: str = HOST,
        launcher: tuple[str, ...] = (),
        erl_args: str = "",
    ) -> None:
        self.data_dir = Path(data_dir)
        # Where the node listens (AMQP, stream, management, epmd, distribution): loopback,
        # or an address of its own in a network namespace, which ``launcher`` enters
        # (``ip netns exec NS``, before the server, rabbitmqctl and epmd). A node name
        # whose host part has dots (``r1@10.1.2.3``) runs with long names.
        self.host = host
        self.launcher = tuple(launcher)
        # Added to the Erlang VM's arguments, the node's and rabbitmqctl's
        # (``-kernel net_ticktime 4``: both sides of a connection should agree).
        self.erl_args = erl_args
        # Lines added to rabbitmq.conf (a cluster's peer discovery), the Erlang cookie
        # to write before the first boot (nodes of one cluster share it), and whether
        # stop() ends the epmd this node started (a cluster ends its shared epmd itself).
        self.extra_config = extra_config
        self.cookie = cookie
        self.manage_epmd = manage_epmd
        self.amqp_port = amqp_port
        self.management_port = management_port
        self.stream_port = stream_port
        self.dist_port = dist_port
        self.epmd_port = epmd_port
        self.nodename = nodename
        self.log_file = log_file or self.data_dir / "rabbitmq-server.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._node_pid: int | None = None
        self._owns_epmd = False
        self._queues_down: list[str] = []

    @property
    def pid(self) -> int | None:
        """PID of the started ``rabbitmq-server`` process (its group leader), if running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def node_pid(self) -> int | None:
        """PID of the Erlang VM (``beam.smp``) of the running node, once it has booted."""
        return self._node_pid if self.pid is not None else None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@{self.host}:{self.management_port}"

    @property
    def node_log(self) -> Path:
        """The node's own log file (the stdout log is :attr:`log_file`)."""
        return self.data_dir / "log" / f"{self.nodename}.log"

    def env(self) -> dict[str, str]:
        """The environment both the node and rabbitmqctl run with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        d = self.data_dir
        env.update(
            HOME=str(d / "home"),
            LANG="C.UTF-8",
            LC_ALL="C.UTF-8",
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(d / "rabbitmq.pid"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            # epmd and the Erlang distribution listen on the node's address only, as
            # AMQP does (epmd adds loopback by itself).
            ERL_EPMD_ADDRESS=self.host,
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                f"-kernel inet_dist_use_interface {{{self.host.replace('.', ',')}}} "
                + self.erl_args).strip(),
            # A node that fails to boot writes its crash dump here, not in the cwd.
            ERL_CRASH_DUMP=str(d / "erl_crash.dump"),
        )
        if "." in self.nodename.partition("@")[2]:
            env["RABBITMQ_USE_LONGNAME"] = "true"
        if self.erl_args:
            env["RABBITMQ_CTL_ERL_ARGS"] = self.erl_args
        return env

    def _write_config(self) -> None:
        d = self.data_dir
        for sub in ("home", "mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.host}:{self.amqp_port}\n"
            f"management.tcp.ip = {self.host}\n"
            f"management.tcp.port = {self.management_port}\n"
            f"stream.listeners.tcp.default = {self.host}:{self.stream_port}\n"
            "log.console = false\n"
            "log.file.level = info\n"
            "disk_free_limit.absolute = 50MB\n"
            "vm_memory_high_watermark.relative = 0.4\n"
            # guest logs in from loopback only; a node at an address of its own (in a
            # namespace a test made, reached from this host alone) lets it in there too.
            + ("" if self.host == HOST else "loopback_users = none\n")
            + self.extra_config
        )
        if self.cookie is not None:
            cookie = d / "home" / ".erlang.cookie"
            if not cookie.exists():
                cookie.write_text(self.cookie)
                cookie.chmod(0o400)
        (d / "enabled_plugins").write_text(ENABLED_PLUGINS)
        # Keep /etc/rabbitmq/rabbitmq-env.conf out of this node.
        (d / "rabbitmq-env.conf").write_text("")

    def start(self, timeout_s: float = 60.0, *, require_queues: bool = True) -> None:
        """Start the node and return once AMQP, stream and management all answer
        and (``require_queues``) no queue is reported down.

        Raises ServerError (with the end of the logs) if the node exits or is
        not ready within ``timeout_s``; the node is then stopped again.
        """
        if self.pid is not None:
            return
        if not rabbitmq_available():
            raise ServerError(f"RabbitMQ is not installed ({RABBITMQ_SERVER} missing)")
        self._write_config()
        # An epmd already on the port is someone else's; only end one our node starts.
        self._owns_epmd = self.manage_epmd and (
            self._owns_epmd or not port_answers(self.host, self.epmd_port))
        (self.data_dir / "rabbitmq.pid").unlink(missing_ok=True)
        self._node_pid = None
        began = time.monotonic()
        self._proc = spawn_in_group([*self.launcher, str(RABBITMQ_SERVER)], self.env(),
                                    self.log_file)
        try:
            self._wait_ready(began + timeout_s, require_queues)
        except BaseException:
            self.stop(timeout_s=10.0)
            raise
        self._node_pid = self._read_node_pid()
        log.info(
            "RabbitMQ %s ready on %s in %.1fs",
            self.nodename,
            self.amqp_port,
            time.monotonic() - began,
        )

    def _wait_ready(self, deadline: float, require_queues: bool = True) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerError(
                    f"rabbitmq-server exited with code {code} while starting\n"
                    f"{log_tail(self.log_file)}\n{log_tail(self.node_log)}"
                )
            if self._ready(require_queues):
                return
            if time.monotonic() >= deadline:
                down = f" (queues still down: {self._queues_down})" if self._queues_down else ""
                raise ServerError(
                    f"RabbitMQ {self.nodename} not ready in time{down}\n"
                    f"{log_tail(self.log_file)}\n{log_tail(self.node_log)}"
                )
            time.sleep(0.2)

    def _ready(self, require_queues: bool = True) -> bool:
        ports = (self.amqp_port, self.stream_port, self.management_port)
        if not all(port_answers(self.host, port) for port in ports):
            return False
        if not (amqp_answers(self.amqp_url) and management_api_answers(self.management_url)):
            return False
        if not require_queues:
            return True
        # After a restart AMQP answers a moment before the streams' members are back
        # ("home node … is down"); the management API reports those queues as down.
        self._queues_down = self.queues_down()
        return not self._queues_down

    def queues_down(self) -> list[str]:
        """Names (``vhost/name``) of queues the node reports as down; [] if none or unknown."""
        queues = management_get(self.management_url, "/api/queues?columns=vhost,name,state")
        if not isinstance(queues, list):
            return []
        return [f"{q.get('vhost')}/{q.get('name')}" for q in queues if q.get("state") == "down"]

    def _read_node_pid(self) -> int | None:
        try:
            return int((self.data_dir / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _members(self) -> list[int]:
        pid = self._node_pid or self._read_node_pid()
        return [pid] if pid else []

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the node gracefully (SIGTERM, SIGKILL after ``timeout_s``) and its epmd.

        Idempotent; after a :meth:`kill` it only ends the epmd.
        """
        if self._proc is not None:
            end_group(self._proc, self._members(), timeout_s, f"RabbitMQ {self.nodename}")
            self._proc = None
        self._stop_epmd()

    def kill(self) -> None:
        """SIGKILL the node at once, as a crash would; the epmd keeps running."""
        if self._proc is not None:
            kill_group(self._proc, self._members(), f"RabbitMQ {self.nodename}")
            self._proc = None

    def _stop_epmd(self) -> None:
        if not self._owns_epmd:
            return
        self._owns_epmd = False
        stop_epmd(self.epmd_port, self.host, self.launcher)

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """Run ``rabbitmqctl args…`` against this node and return its stdout.

        Raises ServerError if it exits non-zero or takes longer than ``timeout_s``.
        """
        argv = [*self.launcher, str(RABBITMQCTL), "-n", self.nodename, *args]
        try:
            result = subprocess.run(
                argv,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"rabbitmqctl {' '.join(args)} timed out after {timeout_s}s") from exc
        stdout = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()
            raise ServerError(
                f"rabbitmqctl {' '.join(args)} failed with code {result.returncode}: "
                f"{stderr or stdout.strip()}"
            )
        return stdout

    def sync_to_disk(self) -> None:
        """Have the node write its dets tables to disk now.

        RabbitMQ 3.10.8 keeps Ra's register of servers (the stream coordinator, each
        quorum queue) in dets files that reach the disk only every few minutes; a node
        killed before that comes back without the servers created since, and their
        streams and queues stay down. Call this after creating them.
        """
        self.ctl("eval", "[dets:sync(T) || T <- dets:all()].")


def stop_epmd(port: int, host: str = HOST, launcher: tuple[str, ...] = (),
              timeout_s: float = 10.0) -> None:
    """End the epmd listening on ``host:port`` (``epmd -port P -kill``, run through
    ``launcher`` for an epmd in a network namespace); never raises.

    Only for an epmd this process started: each is bound to a port of its own.
    """
    epmd = shutil.which("epmd") or next(
        iter(sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"), reverse=True)), None
    )
    if epmd is None:
        log.warning("epmd not found; the epmd on port %d keeps running", port)
        return
    # epmd refuses to die while a node is registered ("Killing not allowed - living
    # nodes in database"); right after a SIGKILL the dead node's entry can linger.
    deadline = time.monotonic() + timeout_s
    reply = ""
    while port_answers(host, port, timeout_s=0.2):
        if time.monotonic() >= deadline:
            log.warning("epmd on port %d did not stop: %s", port, reply)
            return
        result = subprocess.run(
            [*launcher, epmd, "-port", str(port), "-kill"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
        reply = result.stdout.decode(errors="replace").strip()
        time.sleep(0.05 if result.returncode == 0 else 0.2)


class LocalServers(ServerProvider):
    """RabbitMQ in ``data_dir/rabbitmq`` and Redis in ``data_dir/redis``.

    Ports left as ``None`` are picked free (and distinct) at construction, so
    one object keeps its ports across stop/start. The servers are reachable
    as :attr:`rabbitmq` and :attr:`redis` to stop, kill or restart them alone.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        amqp_port: int | None = None,
        management_port: int | None = None,
        stream_port: int | None = None,
        dist_port: int | None = None,
        epmd_port: int | None = None,
        redis_port: int | None = None,
        nodename: str = "liftline@localhost",
        start_timeout_s: float = 60.0,
    ) -> None:
        wanted = [amqp_port, management_port, stream_port, dist_port, epmd_port, redis_port]
        picked = iter(free_ports(sum(port is None for port in wanted)))
        amqp, mgmt, stream, dist, epmd, redis_port = (p or next(picked) for p in wanted)
        self.data_dir = Path(data_dir)
        self.start_timeout_s = start_timeout_s
        self.rabbitmq = LocalRabbitMQ(
            self.data_dir / "rabbitmq",
            amqp_port=amqp,
            management_port=mgmt,
            stream_port=stream,
            dist_port=dist,
            epmd_port=epmd,
            nodename=nodename,
        )
        self.redis = LocalRedis(self.data_dir / "redis", port=redis_port)

    def _start(self) -> Endpoints:
        if not rabbitmq_available():
            raise ServerError(f"RabbitMQ is not installed ({RABBITMQ_SERVER} missing)")
        if not redis_available():
            raise ServerError("redis-server is not installed")
        try:
            self.redis.start()
            self.rabbitmq.start(self.start_timeout_s)
        except BaseException:
            self._stop()
            raise
        return Endpoints(
            amqp_url=self.rabbitmq.amqp_url,
            redis_url=self.redis.redis_url,
            management_url=self.rabbitmq.management_url,
        )

    def kill(self) -> None:
        """SIGKILL both servers and end the epmd: the fast teardown for throwaway data.

        What was already written survives (Mnesia, streams, the AOF up to its
        last fsync); ``start()`` works again afterwards.
        """
        try:
            self.rabbitmq.kill()
            self.redis.kill()
            self.rabbitmq.stop()  # after kill() this only ends the epmd
        finally:
            self._endpoints = None

    def _stop(self) -> None:
        failures: list[ServerError] = []
        for server in (self.rabbitmq, self.redis):
            try:
                server.stop()
            except ServerError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
