"""docker-compose.yml says only what the CLI and Settings understand.

No Docker engine is needed: the file is parsed, every ``liftline …`` command in
it is parsed by the real click group (unknown commands or options fail), and
every ``LIFTLINE_*`` variable must be a Settings field whose value validates.
The ``cluster`` profile must match what ``liftline up --rabbitmq-nodes 3
--redis-sentinel`` starts: its node list, Sentinel URL and Sentinel service name
are checked against the RabbitMQ and Redis services it defines.
"""

from __future__ import annotations

import os
import re
import shlex
import urllib.parse
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from liftline.cli.main import cli
from liftline.servers.sentinel import QUORUM, SERVICE
from liftline.settings import Settings, split_urls
from liftline.store.redis_store import SentinelUrl

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DEFAULT = {"rabbitmq", "redis", "ingest", "worker", "autoscaler"}
CLUSTER = {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "redis-primary", "redis-replica",
           "sentinel-1", "sentinel-2", "sentinel-3", "ingest-cluster", "worker-cluster",
           "autoscaler-cluster"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def liftline_commands(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    out = []
    for name, service in compose["services"].items():
        for argv in (service.get("command"), (service.get("healthcheck") or {}).get("test")):
            if isinstance(argv, list) and argv and argv[0] == "CMD":
                argv = argv[1:]
            if isinstance(argv, list) and argv and argv[0] == "liftline":
                out.append((name, argv))
    return out


def test_every_liftline_command_and_option_exists_in_the_cli(
        compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LIFTLINE_")]:
        monkeypatch.delenv(var)
    commands = liftline_commands(compose)
    assert {name for name, _ in commands} >= {"ingest", "worker", "autoscaler", "ingest-cluster",
                                              "worker-cluster", "autoscaler-cluster"}
    for service, argv in commands:
        group_ctx = cli.make_context("liftline", list(argv[1:]), resilient_parsing=True)
        sub = cli.get_command(group_ctx, argv[1])
        assert sub is not None, f"{service}: `liftline {argv[1]}` is not a command"
        try:
            sub.make_context(argv[1], list(argv[2:]))  # parses and checks every option
        except click.UsageError as exc:
            pytest.fail(f"{service}: {' '.join(argv)}: {exc.format_message()}")


def test_every_liftline_variable_is_a_setting_with_a_valid_value(compose: dict[str, Any]) -> None:
    names = set(re.findall(r"LIFTLINE_[A-Z0-9_]+", COMPOSE.read_text()))
    fields = {f"LIFTLINE_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert names, "no LIFTLINE_* variables in docker-compose.yml"
    assert names <= fields, f"not settings: {sorted(names - fields)}"
    for name, service in compose["services"].items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()
               if k.startswith("LIFTLINE_")}
        if env and "cluster" not in service.get("profiles", []):
            Settings.from_env(env)  # raises ConfigError naming a bad value
            assert env["LIFTLINE_AMQP_URL"].startswith("amqp://") and "@rabbitmq:" in \
                env["LIFTLINE_AMQP_URL"], name
            assert env["LIFTLINE_REDIS_URL"].startswith("redis://redis:"), name
        elif env:
            Settings.from_env(env)  # the cluster profile's: checked in depth below


def test_the_services_are_the_ones_the_design_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {n for n, s in services.items() if not s.get("profiles")} == DEFAULT
    assert {n for n, s in services.items() if s.get("profiles") == ["cluster"]} == CLUSTER
    assert set(services) == DEFAULT | CLUSTER
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    # The official RabbitMQ image with management, plus the stream plugin enabled.
    assert re.fullmatch(r"rabbitmq:[\w.]+-management", services["rabbitmq"]["image"])
    mounts = [v for v in services["rabbitmq"]["volumes"] if "enabled_plugins" in v]
    plugins = (REPO / mounts[0].split(":")[0]).read_text()
    assert "rabbitmq_stream" in plugins and "rabbitmq_management" in plugins
    assert services["redis"]["command"][1:3] == ["--appendonly", "yes"]
    # The worker can be scaled: no fixed name, no host port; SIGTERM gets time to hand over.
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert int(worker["stop_grace_period"].rstrip("s")) >= 30
    scaler = services["autoscaler"]["command"]
    assert scaler[scaler.index("--backend") + 1] == "compose"
    assert scaler[scaler.index("--service") + 1] in services
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["autoscaler"]["volumes"]


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "", parts.port


def test_the_cluster_profile_is_the_cluster_liftline_up_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nodes = sorted(n for n in CLUSTER if n.startswith("rabbitmq-"))
    sentinels = sorted(n for n in CLUSTER if n.startswith("sentinel-"))
    # The same shape `liftline up` accepts for a local cluster.
    up = cli.get_command(cli.make_context("liftline", ["up"], resilient_parsing=True), "up")
    assert up is not None
    up.make_context("up", ["--rabbitmq-nodes", str(len(nodes)), "--redis-sentinel"])

    # RabbitMQ: the default node's image and plugins, one cookie, classic config naming
    # exactly rabbit@<hostname> of the three; the others wait for the first.
    conf_files = set()
    for name in nodes:
        node = services[name]
        assert node["image"] == services["rabbitmq"]["image"] and node["hostname"] == name
        assert any("enabled_plugins" in v for v in node["volumes"]), name
        mount = next(v for v in node["volumes"] if "/etc/rabbitmq/conf.d/" in v)
        conf_files.add(mount.split(":")[0])
        if name != nodes[0]:
            assert node["depends_on"][nodes[0]]["condition"] == "service_healthy"
    assert len(conf_files) == 1
    conf = (REPO / conf_files.pop()).read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    listed = re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = (\S+)$", conf, re.M)
    assert listed == [f"rabbit@{n}" for n in nodes]
    cookies = {services[n]["environment"]["RABBITMQ_ERLANG_COOKIE"] for n in nodes}
    assert len(cookies) == 1 and cookies != {""}

    # Redis: a primary, its replica, and Sentinels that monitor it under liftline's
    # service name with the quorum of liftline.servers.sentinel.
    primary, replica = services["redis-primary"], services["redis-replica"]
    assert primary["command"][1:3] == ["--appendonly", "yes"]
    at = replica["command"].index("--replicaof")
    assert replica["command"][at + 1:at + 3] == ["redis-primary", "6379"]
    monitors = set()
    for name in sentinels:
        script = services[name]["command"][-1]
        words = shlex.split(script)
        assert "--sentinel" in words and "port 26379" in words, name
        monitors |= {w for w in words if w.startswith("sentinel monitor ")}
    assert monitors == {f"sentinel monitor {SERVICE} redis-primary 6379 {QUORUM}"}

    # The liftline services of the profile: every node and every Sentinel, nothing else.
    for name in ("ingest-cluster", "worker-cluster", "autoscaler-cluster"):
        service = services[name]
        env = {k: str(v) for k, v in service["environment"].items() if k.startswith("LIFTLINE_")}
        settings = Settings.from_env(env)
        amqp = [_host_port(u) for u in split_urls(settings.amqp_url)]
        assert amqp == [(n, 5672) for n in nodes], name
        assert [_host_port(u) for u in settings.management_urls] == [(n, 15672) for n in nodes]
        spec = SentinelUrl.parse(settings.redis_url)
        assert spec.sentinels == [(n, 26379) for n in sentinels] and spec.service == SERVICE
        assert settings.wait_replicas == 1, name  # a flush counts once the replica holds it
        assert set(service["depends_on"]) >= set(nodes) | set(sentinels), name
    scaler = services["autoscaler-cluster"]["command"]
    assert scaler[scaler.index("--service") + 1] == "worker-cluster"
    # One worker health check for both profiles, through liftline's own Redis client
    # (a plain redis-py client cannot follow a redis+sentinel:// URL).
    check = services["worker"]["healthcheck"]
    assert services["worker-cluster"]["healthcheck"] == check
    assert "from liftline.store.redis_store import connect" in check["test"][-1]
    compile(check["test"][-1], "worker healthcheck", "exec")


def test_the_keda_example_uses_real_settings_and_metrics() -> None:
    keda = REPO / "deploy" / "keda"
    docs = [d for f in sorted(keda.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    kinds = {d["kind"] for d in docs}
    assert {"ScaledObject", "Deployment", "Service"} <= kinds
    exporter = next(d for d in docs if d["kind"] == "Deployment")
    container = exporter["spec"]["template"]["spec"]["containers"][0]
    argv = container["command"]
    sub = cli.get_command(cli.make_context("liftline", argv[1:], resilient_parsing=True),
                          argv[1])
    assert sub is not None
    sub.make_context(argv[1], list(argv[2:]))
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    fields = {f"LIFTLINE_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert set(env) <= fields, sorted(set(env) - fields)
    Settings.from_env({k: v for k, v in env.items() if v})
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    query = next(t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus")
    assert "liftline_backlog" in query["metadata"]["query"]
    assert int(query["metadata"]["threshold"]) == int(env["LIFTLINE_AUTOSCALE_TARGET"])
