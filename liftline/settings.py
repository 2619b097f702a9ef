"""One frozen Settings object, built once from ``LIFTLINE_*`` env vars and flags.

Pass it explicitly; nothing in liftline reads the environment elsewhere.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from liftline.codec import MAX_BATCH_BYTES
from liftline.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "LIFTLINE_"
# Variables under these prefixes belong to tests and tools, not to Settings: they
# are neither read as settings nor dropped from a child process's environment.
FOREIGN_ENV_PREFIXES = ("LIFTLINE_TEST_", "LIFTLINE_BENCH_", "LIFTLINE_WITH_")
# Always written by to_env(), default or not: a child must find the same servers
# and cluster even where its own environment would give it other defaults.
_ALWAYS_IN_ENV = ("amqp_url", "redis_url", "cluster")

# Ports of the local stack differ from the servers' usual ports on purpose: a
# Debian machine may already run the system RabbitMQ (5672) and Redis (6379).
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5673/%2F"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6380/0"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Settings:
    """Every knob liftline has. Immutable; build with :meth:`from_env`."""

    # RabbitMQ: one node's URL, or every node's, comma-separated (a cluster). Each
    # connection picks a node and moves to the next when its node fails.
    amqp_url: str = DEFAULT_AMQP_URL
    redis_url: str = DEFAULT_REDIS_URL
    # Namespace of one cluster: prefixes every RabbitMQ name and Redis key.
    cluster: str = "default"
    # Fixed when the cluster is created; a client with another value is refused.
    partitions: int = 16
    replicas: int = 2
    # Producer batching.
    linger_ms: float = 5.0
    batch_max_writes: int = 2000
    batch_max_bytes: int = 1024 * 1024
    confirm_timeout_s: float = 30.0
    # A publish left unconfirmed this long while later ones are confirmed (or none
    # are) marks its channel as faulty: RabbitMQ 3.10 may confirm later publishes on
    # such a channel without storing them, so what it has in flight is re-sent on a
    # fresh channel and nothing it confirmed after that publish is reported stored.
    confirm_stall_s: float = 2.0
    reconnect_attempts: int = 8
    reconnect_backoff_s: float = 0.2
    reconnect_backoff_max_s: float = 5.0
    # Worker persistence.
    flush_interval_ms: int = 250
    flush_max_writes: int = 50_000
    # Stream messages in flight per partition: bounds the work one turn of the
    # worker's loop may take before it flushes and heart-beats again.
    prefetch: int = 8
    append_cap: int = 1000
    # Producer ids expire this long after they were made (ids carry their time):
    # workers then forget their watermarks, and producers take a new id halfway
    # through, so a retried batch still has half the window to arrive. The
    # cluster keeps the value its first worker or producer stored.
    producer_id_ttl_s: int = 86_400
    # Stream retention; entries newer than the last flush must never be dropped.
    stream_max_bytes: int = 20 * 1024**3
    stream_segment_bytes: int = 64 * 1024**2
    # Membership.
    heartbeat_s: float = 1.0
    member_ttl_s: float = 5.0
    # Reads.
    rpc_timeout_s: float = 5.0
    # Redis replication: a claim or a flush counts only once WAIT says this many
    # replicas hold it (-1: 1 with a redis+sentinel:// URL, else 0), waiting at
    # most redis_wait_timeout_ms; else it is retried, never assumed.
    redis_wait_replicas: int = -1
    redis_wait_timeout_ms: int = 1000
    # Read-only commands (status, get, deadletters, jobs stats/dead): the wait for
    # each server per connection attempt, so that one that hangs cannot hold them.
    query_timeout_s: float = 3.0
    # Jobs.
    job_result_ttl_s: int = 86_400
    job_delivery_limit: int = 5
    job_key_queues: int = 16
    job_dead_max: int = 100_000  # dead jobs kept for replay; the oldest go first
    # Replicas of each partition stream and quorum job queue in a RabbitMQ cluster;
    # 0: min(3, the nodes in amqp_url). Fixed when the cluster is created (RabbitMQ
    # refuses to declare a queue again with another count).
    stream_replicas: int = 0
    # Local stack.
    data_dir: str = ".liftline"
    # RabbitMQ management API (status shows stream leaders and nodes): URLs,
    # comma-separated; empty: each AMQP node's host at its port + 10000 (15672 for 5672).
    management_url: str = ""
    # HTTP ingest service (liftline ingest). Comma-separated bearer tokens; empty: no auth.
    ingest_tokens: str = field(default="", repr=False)
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    ingest_app: str = ""  # module:attr of the App whose reducers (and routes) it serves
    ingest_max_body_bytes: int = 1024 * 1024
    ingest_max_batch_writes: int = 1000
    # A write not confirmed by then is answered 503 + Retry-After (never a hang).
    ingest_publish_timeout_s: float = 5.0
    # As the Producer's linger_ms: under load, 5 ms put about twice the rides of 1 ms in
    # a message, and RabbitMQ's CPU is paid per message (README, Benchmarks).
    ingest_linger_ms: float = 5.0
    ingest_max_pending: int = 100_000  # writes awaiting confirms per process, then 503
    # `liftline dashboard` (the dashboard without the HTTP service, which serves it at
    # /dashboard itself); its bearer tokens are ingest_tokens unless given apart.
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8090
    # Autoscaler (liftline autoscale). Backlog = writes not yet applied + jobs queued.
    autoscale_min: int = 1
    autoscale_max: int = 6
    autoscale_target: int = 5000  # backlog one worker is meant to carry
    autoscale_interval_s: float = 2.0
    autoscale_scale_down_after_s: float = 30.0  # quiet window before scaling in
    autoscale_max_step: int = 0  # workers added or removed per interval; 0: no limit
    autoscale_keep_replicas: bool = False  # never fewer workers than `replicas`
    autoscale_backend: str = "local"  # local | compose | command
    autoscale_service: str = "worker"  # compose service to scale
    autoscale_command: str = ""  # command backend: run with {n} replaced by the count
    autoscale_metrics_host: str = "127.0.0.1"
    autoscale_metrics_port: int = 0  # Prometheus /metrics; 0: no endpoint
    autoscale_stop_timeout_s: float = 60.0  # a SIGTERMed worker is killed after this

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is out of range."""
        if not isinstance(self.cluster, str) or not _NAME_RE.fullmatch(self.cluster):
            raise ConfigError(
                f"cluster {self.cluster!r}: use 1-40 letters, digits, '-' or '_'"
            )
        if not 1 <= self.partitions <= 4096:
            raise ConfigError(f"partitions={self.partitions}: must be 1..4096")
        if not 1 <= self.replicas <= 5:
            raise ConfigError(f"replicas={self.replicas}: must be 1..5")
        for name in ("job_result_ttl_s", "job_delivery_limit", "job_key_queues", "job_dead_max",
                     "batch_max_writes", "batch_max_bytes", "flush_interval_ms",
                     "flush_max_writes", "prefetch", "append_cap", "reconnect_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if not -1 <= self.redis_wait_replicas <= 5:
            raise ConfigError(f"redis_wait_replicas={self.redis_wait_replicas}: must be -1..5")
        if not 1 <= self.redis_wait_timeout_ms <= 60_000:
            raise ConfigError("redis_wait_timeout_ms: must be 1..60000")
        if self.producer_id_ttl_s < 4:
            raise ConfigError(f"producer_id_ttl_s={self.producer_id_ttl_s}: must be >= 4")
        if self.batch_max_bytes > MAX_BATCH_BYTES:
            raise ConfigError(f"batch_max_bytes: at most {MAX_BATCH_BYTES} (what workers accept)")
        if self.linger_ms < 0 or self.ingest_linger_ms < 0:
            raise ConfigError("linger_ms / ingest_linger_ms: must be >= 0")
        for name in ("ingest_port", "dashboard_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name}={getattr(self, name)}: must be 0..65535")
        for name in ("ingest_max_body_bytes", "ingest_max_batch_writes", "ingest_max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if not 0 < self.query_timeout_s <= 60:
            raise ConfigError("query_timeout_s: must be in (0, 60]")
        if not 0 < self.ingest_publish_timeout_s <= 300:
            raise ConfigError("ingest_publish_timeout_s: must be in (0, 300]")
        self._validate_autoscale()
        if self.member_ttl_s <= self.heartbeat_s:
            raise ConfigError("member_ttl_s must be larger than heartbeat_s")
        if not self.amqp_nodes:
            raise ConfigError("amqp_url: give at least one RabbitMQ node URL")
        redis_schemes = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
        for name, urls, scheme in (("amqp_url", self.amqp_nodes, ("amqp", "amqps")),
                                   ("redis_url", [self.redis_url], redis_schemes)):
            for url in urls:
                if urllib.parse.urlsplit(url).scheme not in scheme:
                    raise ConfigError(f"{name}={mask_url(url)!r}: scheme must be one of {scheme}")
        if not 0 <= self.stream_replicas <= 9:
            raise ConfigError(f"stream_replicas={self.stream_replicas}: must be 0..9 (0: auto)")
        if not 0 < self.confirm_stall_s <= 600:
            raise ConfigError("confirm_stall_s: must be in (0, 600]")

    def _validate_autoscale(self) -> None:
        if not 0 <= self.autoscale_min <= self.autoscale_max <= 1000:
            raise ConfigError(f"autoscale_min={self.autoscale_min}, autoscale_max="
                              f"{self.autoscale_max}: need 0 <= min <= max <= 1000")
        if self.autoscale_max < 1 or self.autoscale_target < 1 or self.autoscale_max_step < 0:
            raise ConfigError("autoscale_max and autoscale_target must be >= 1, "
                              "autoscale_max_step >= 0")
        if not 0 < self.autoscale_interval_s <= 3600 or self.autoscale_scale_down_after_s < 0 \
                or self.autoscale_stop_timeout_s <= 0:
            raise ConfigError("autoscale_interval_s must be in (0, 3600], "
                              "autoscale_scale_down_after_s >= 0, autoscale_stop_timeout_s > 0")
        if self.autoscale_backend not in ("local", "compose", "command"):
            raise ConfigError(f"autoscale_backend={self.autoscale_backend!r}: "
                              "use local, compose or command")
        if not 0 <= self.autoscale_metrics_port <= 65535:
            raise ConfigError(f"autoscale_metrics_port={self.autoscale_metrics_port}: "
                              "must be 0..65535")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from ``LIFTLINE_*`` variables, then ``overrides`` (flags).

        Unknown ``LIFTLINE_*`` variables and unknown overrides are refused, so a
        typo never silently falls back to a default. ``None`` overrides are ignored.
        """
        env = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, raw in env.items():
            if not var.startswith(ENV_PREFIX) or var.startswith(FOREIGN_ENV_PREFIXES):
                continue
            name = var[len(ENV_PREFIX):].lower()
            if name not in known:
                raise ConfigError(f"unknown setting {var}; known: {', '.join(sorted(known))}")
            values[name] = _coerce(name, raw, known[name].type)
        for name, value in overrides.items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = _coerce(name, value, known[name].type) if isinstance(value, str) \
                    else value
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid settings: {exc}") from exc

    def to_env(self) -> dict[str, str]:
        """``LIFTLINE_*`` variables from which :meth:`from_env` rebuilds these settings
        in another process: every setting that differs from its default, and always
        the servers and the cluster. Secrets (tokens, URL passwords) are included."""
        defaults = Settings()
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _ALWAYS_IN_ENV or value != getattr(defaults, f.name):
                out[f"{ENV_PREFIX}{f.name.upper()}"] = str(value)
        return out

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a child process that must run with these settings:
        ``base`` (this process's environment by default) without its ``LIFTLINE_*``
        settings (the tools' variables stay), then :meth:`to_env`."""
        env = {k: v for k, v in (os.environ if base is None else base).items()
               if not k.startswith(ENV_PREFIX) or k.startswith(FOREIGN_ENV_PREFIXES)}
        env.update(self.to_env())
        return env

    @property
    def wait_replicas(self) -> int:
        """Replicas that must hold a claim or flush (``redis_wait_replicas`` resolved)."""
        if self.redis_wait_replicas >= 0:
            return self.redis_wait_replicas
        return 1 if self.redis_url.startswith("redis+sentinel://") else 0

    @property
    def amqp_nodes(self) -> list[str]:
        """The RabbitMQ node URLs of ``amqp_url``, in the order given."""
        return split_urls(self.amqp_url)

    @property
    def management_urls(self) -> list[str]:
        """The management API URLs: ``management_url``'s, else one per AMQP node (its
        host, its credentials, the AMQP port + 10000, as RabbitMQ's 5672 and 15672;
        none for a node whose AMQP port is above 55535)."""
        given = split_urls(self.management_url)
        if given:
            return given
        out = []
        for url in self.amqp_nodes:
            parts = urllib.parse.urlsplit(url)
            port = (parts.port or (5671 if parts.scheme == "amqps" else 5672)) + 10000
            if port > 65535:
                continue  # no port to guess: set management_url
            user = parts.username or "guest"
            password = parts.password or "guest"
            host = parts.hostname or "127.0.0.1"
            scheme = "https" if parts.scheme == "amqps" else "http"
            out.append(f"{scheme}://{user}:{password}@{host}:{port}")
        return out

    def resolved_stream_replicas(self) -> int:
        """``stream_replicas``, or min(3, the nodes of ``amqp_url``) when it is 0."""
        return self.stream_replicas or min(3, len(self.amqp_nodes))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with passwords and tokens hidden, for logs."""
        out = dataclasses.asdict(self)
        for name in ("amqp_url", "redis_url", "management_url"):
            out[name] = mask_url(out[name])
        out["ingest_tokens"] = "***" if self.ingest_tokens else ""
        return out

    def log_start(self, component: str) -> None:
        log.info("%s starting with settings %s", component, self.masked())


def _coerce(name: str, raw: str, type_name: Any) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "str")
    try:
        if kind == "int":
            return int(raw.replace("_", ""))
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return {"1": True, "true": True, "yes": True, "on": True, "0": False,
                    "false": False, "no": False, "off": False}[raw.strip().lower()]
    except KeyError as exc:
        raise ConfigError(f"LIFTLINE_{name.upper()}={raw!r}: expected true or false") from exc
    except ValueError as exc:
        raise ConfigError(f"LIFTLINE_{name.upper()}={raw!r}: expected {kind}") from exc
    return raw


def split_urls(value: str) -> list[str]:
    """The URLs of a comma-separated list (blanks dropped)."""
    return [u.strip() for u in value.split(",") if u.strip()]


def mask_url(url: str) -> str:
    """The URL (or comma-separated URLs) with each password replaced by ***."""
    if not url:
        return url
    if "," in url:
        return ",".join(mask_url(u) for u in split_urls(url))
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
