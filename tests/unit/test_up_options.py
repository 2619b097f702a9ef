"""`liftline up`'s Redis choices: one at a time, said plainly in --help (no servers)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from liftline.cli.main import cli


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("LIFTLINE_AMQP_URL", "LIFTLINE_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner()


def test_sentinel_and_cluster_together_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["up", "--redis-sentinel", "--redis-cluster"])
    assert result.exit_code == 2
    assert "--redis-sentinel and --redis-cluster are mutually exclusive" in result.output


@pytest.mark.parametrize("flag", ["--redis-sentinel", "--redis-cluster"])
def test_a_started_redis_cannot_also_be_a_given_one(runner: CliRunner, flag: str) -> None:
    given = runner.invoke(cli, ["up", flag], env={"LIFTLINE_REDIS_URL": "redis://h:6379/0"})
    assert given.exit_code == 2 and "LIFTLINE_REDIS_URL is set" in given.output
    odd = runner.invoke(cli, ["up", flag, "--redis-url", "redis+cluster://127.0.0.1:7000"])
    assert odd.exit_code == 2 and "must then be redis://127.0.0.1:PORT/0" in odd.output


def test_help_says_what_each_starts(runner: CliRunner) -> None:
    text = " ".join(runner.invoke(cli, ["up", "--help"], terminal_width=200).output.split())
    assert "--redis-sentinel Start a Redis primary and one replica (ports 6380, 6381) and 3 " \
           "Sentinels (26380-26382)" in text
    assert "redis+sentinel:// URL" in text
    assert "--redis-cluster Start a Redis Cluster of 3 masters (ports 6380-6382" in text
    assert "redis+cluster:// URL" in text
