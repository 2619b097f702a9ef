"""docker-compose.yml says only what the CLI and Settings understand.

No Docker engine is needed: the file is parsed, every ``liftline …`` command in
it is parsed by the real click group (unknown commands or options fail), and
every ``LIFTLINE_*`` variable must be a Settings field whose value validates.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from liftline.cli.main import cli
from liftline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


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
    assert {name for name, _ in commands} >= {"ingest", "worker", "autoscaler"}
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
        if env:
            Settings.from_env(env)  # raises ConfigError naming a bad value
            assert env["LIFTLINE_AMQP_URL"].startswith("amqp://") and "@rabbitmq:" in \
                env["LIFTLINE_AMQP_URL"], name
            assert env["LIFTLINE_REDIS_URL"].startswith("redis://redis:"), name


def test_the_services_are_the_ones_the_design_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"rabbitmq", "redis", "ingest", "worker", "autoscaler"}
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
