"""liftline.settings: one validated, frozen Settings built from LIFTLINE_* and flags."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest

from liftline.errors import ConfigError
from liftline.settings import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL, Settings, mask_url


def test_defaults_are_valid() -> None:
    settings = Settings()
    assert settings.amqp_url == DEFAULT_AMQP_URL
    assert settings.redis_url == DEFAULT_REDIS_URL
    assert settings.cluster == "default"
    assert settings.partitions == 16
    assert settings.replicas == 2
    assert settings.append_cap == 1000
    assert settings.member_ttl_s > settings.heartbeat_s


def test_from_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFTLINE_PARTITIONS", "8")
    assert Settings.from_env().partitions == 8


def test_from_env_coerces_each_type() -> None:
    settings = Settings.from_env({
        "LIFTLINE_PARTITIONS": "64",
        "LIFTLINE_LINGER_MS": "2.5",
        "LIFTLINE_HEARTBEAT_S": "2",
        "LIFTLINE_MEMBER_TTL_S": "10",
        "LIFTLINE_FLUSH_MAX_WRITES": "100_000",
        "LIFTLINE_CLUSTER": "orders-eu_1",
        "LIFTLINE_AMQP_URL": "amqps://u:p@mq.example:5671/vh",
        "LIFTLINE_REDIS_URL": "unix:///run/redis.sock",
        "LIFTLINE_DATA_DIR": "/var/lib/liftline",
    })
    assert settings.partitions == 64 and type(settings.partitions) is int
    assert settings.linger_ms == 2.5 and type(settings.linger_ms) is float
    assert settings.heartbeat_s == 2.0 and type(settings.heartbeat_s) is float
    assert settings.member_ttl_s == 10.0
    assert settings.flush_max_writes == 100_000
    assert settings.cluster == "orders-eu_1"
    assert settings.amqp_url == "amqps://u:p@mq.example:5671/vh"
    assert settings.redis_url == "unix:///run/redis.sock"
    assert str(settings.data_path) == "/var/lib/liftline"


@pytest.mark.parametrize(
    ("var", "raw"),
    [("LIFTLINE_PARTITIONS", "sixteen"), ("LIFTLINE_PARTITIONS", "1.5"),
     ("LIFTLINE_PARTITIONS", ""), ("LIFTLINE_LINGER_MS", "fast")],
)
def test_values_that_are_not_numbers_are_refused_naming_the_variable(var: str,
                                                                     raw: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: raw})


def test_an_unknown_liftline_variable_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="LIFTLINE_FOO"):
        Settings.from_env({"LIFTLINE_FOO": "1"})


def test_a_typo_is_refused_rather_than_falling_back_to_a_default() -> None:
    with pytest.raises(ConfigError, match="LIFTLINE_PARTITION\\b"):
        Settings.from_env({"LIFTLINE_PARTITION": "32"})


@pytest.mark.parametrize("var", ["LIFTLINE_TEST_AMQP_URL", "LIFTLINE_TEST_ANYTHING",
                                 "LIFTLINE_BENCH_WRITES", "LIFTLINE_WITH_DOCKER"])
def test_test_and_tool_variables_are_ignored(var: str) -> None:
    assert Settings.from_env({var: "whatever"}) == Settings()


def test_other_variables_are_ignored() -> None:
    env = {"PATH": "/bin", "LIFTLINEX": "1", "MY_LIFTLINE_PARTITIONS": "0", "liftline_foo": "1"}
    assert Settings.from_env(env) == Settings()


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"LIFTLINE_PARTITIONS": "8", "LIFTLINE_CLUSTER": "envname"},
                                 partitions=32)
    assert settings.partitions == 32
    assert settings.cluster == "envname"


def test_none_overrides_are_ignored() -> None:
    settings = Settings.from_env({"LIFTLINE_PARTITIONS": "8"}, partitions=None, cluster=None)
    assert settings.partitions == 8
    assert settings.cluster == "default"


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="partitionz"):
        Settings.from_env({}, partitionz=3)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIFTLINE_PARTITIONS": "0"}, "partitions"),
        ({"LIFTLINE_PARTITIONS": "-4"}, "partitions"),
        ({"LIFTLINE_PARTITIONS": "4097"}, "partitions"),
        ({"LIFTLINE_REPLICAS": "0"}, "replicas"),
        ({"LIFTLINE_REPLICAS": "6"}, "replicas"),
        ({"LIFTLINE_PREFETCH": "0"}, "prefetch"),
        ({"LIFTLINE_APPEND_CAP": "0"}, "append_cap"),
        ({"LIFTLINE_RECONNECT_ATTEMPTS": "0"}, "reconnect_attempts"),
        ({"LIFTLINE_BATCH_MAX_WRITES": "0"}, "batch_max_writes"),
        ({"LIFTLINE_BATCH_MAX_BYTES": str(16 * 1024 * 1024 + 1)}, "batch_max_bytes"),
        ({"LIFTLINE_LINGER_MS": "-1"}, "linger_ms"),
        ({"LIFTLINE_MEMBER_TTL_S": "1"}, "member_ttl_s"),
        ({"LIFTLINE_AMQP_URL": "http://mq:5672/"}, "amqp_url"),
        ({"LIFTLINE_AMQP_URL": "mq.example:5672"}, "amqp_url"),
        ({"LIFTLINE_AMQP_URL": "redis://127.0.0.1:6379/0"}, "amqp_url"),
        ({"LIFTLINE_REDIS_URL": "amqp://127.0.0.1:5672/"}, "redis_url"),
        ({"LIFTLINE_REDIS_URL": ""}, "redis_url"),
    ],
)
def test_invalid_values_are_refused_naming_the_setting(env: dict[str, str],
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize("name", ["a", "A-1_b", "x" * 40, "0prod"])
def test_good_cluster_names(name: str) -> None:
    assert Settings(cluster=name).cluster == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 41, "-lead", "_lead", "has space", "dots.in.name", "slash/name", "é",
     "prod\n", "prod\r\n", "\nprod"],
    ids=["empty", "41-chars", "leading-dash", "leading-underscore", "space", "dots",
         "slash", "non-ascii", "trailing-newline", "trailing-crlf", "leading-newline"],
)
def test_bad_cluster_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cluster"):
        Settings(cluster=name)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6380/0", "rediss://h:6380/1",
                                 "unix:///tmp/redis.sock"])
def test_accepted_redis_url_schemes(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_the_error_for_a_bad_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(amqp_url="http://user:hunter2@mq:5672/")
    assert "hunter2" not in str(caught.value)


def test_masked_hides_passwords_and_tokens() -> None:
    settings = Settings(
        amqp_url="amqp://app:s3cret@mq.example:5672/%2F",
        redis_url="redis://:r3dispw@cache.example:6379/0",
        management_url="http://admin:m4nage@mq.example:15672/",
        ingest_tokens="tok-1,tok-2",
    )
    masked = settings.masked()
    assert masked["amqp_url"] == "amqp://app:***@mq.example:5672/%2F"
    assert masked["redis_url"] == "redis://:***@cache.example:6379/0"
    assert masked["management_url"] == "http://admin:***@mq.example:15672/"
    assert masked["ingest_tokens"] == "***"
    text = json.dumps(masked)
    for secret in ("s3cret", "r3dispw", "m4nage", "tok-1"):
        assert secret not in text
    assert masked["partitions"] == 16
    assert masked["cluster"] == "default"


def test_masked_leaves_urls_without_passwords_alone() -> None:
    masked = Settings(amqp_url="amqp://mq:5672/", ingest_tokens="").masked()
    assert masked["amqp_url"] == "amqp://mq:5672/"
    assert masked["redis_url"] == DEFAULT_REDIS_URL
    assert masked["management_url"] == ""
    assert masked["ingest_tokens"] == ""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://u:p@h/", "amqp://u:***@h/"),
        ("amqp://u:p%40ss@h:1/v", "amqp://u:***@h:1/v"),
        ("amqp://u:pa:ss@h/", "amqp://u:***@h/"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("", ""),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_the_start_log_line_carries_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(amqp_url="amqp://app:s3cret@mq:5672/", ingest_tokens="tok-1")
    with caplog.at_level(logging.INFO, logger="liftline.settings"):
        settings.log_start("worker")
    assert "worker" in caplog.text
    assert "s3cret" not in caplog.text
    assert "tok-1" not in caplog.text


def test_repr_does_not_show_ingest_tokens() -> None:
    assert "tok-1" not in repr(Settings(ingest_tokens="tok-1"))


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.partitions = 4  # type: ignore[misc]


def test_replace_returns_a_validated_copy() -> None:
    settings = Settings()
    bigger = settings.replace(partitions=64)
    assert bigger.partitions == 64
    assert settings.partitions == 16
    with pytest.raises(ConfigError):
        settings.replace(partitions=0)


def test_settings_compare_and_hash_by_value() -> None:
    a: Any = Settings.from_env({"LIFTLINE_PARTITIONS": "8"})
    b: Any = Settings(partitions=8)
    assert a == b
    assert hash(a) == hash(b)


# -- RabbitMQ node lists --------------------------------------------------------------

NODES = "amqp://u:pw@10.0.0.1:5672/%2F, amqp://u:pw@10.0.0.2:5672/%2F,amqps://u:pw@mq3:5671/v"


def test_amqp_url_takes_every_node_of_a_cluster_comma_separated() -> None:
    settings = Settings.from_env({"LIFTLINE_AMQP_URL": NODES})
    assert settings.amqp_nodes == ["amqp://u:pw@10.0.0.1:5672/%2F", "amqp://u:pw@10.0.0.2:5672/%2F",
                                   "amqps://u:pw@mq3:5671/v"]
    assert settings.resolved_stream_replicas() == 3
    assert Settings().amqp_nodes == [DEFAULT_AMQP_URL]
    assert Settings().resolved_stream_replicas() == 1
    assert Settings(amqp_url=NODES, stream_replicas=2).resolved_stream_replicas() == 2
    five = ",".join(f"amqp://h{i}:5672/" for i in range(5))
    assert Settings(amqp_url=five).resolved_stream_replicas() == 3  # min(3, nodes)


def test_every_node_url_is_checked_and_its_password_masked() -> None:
    with pytest.raises(ConfigError, match="amqp_url") as info:
        Settings(amqp_url="amqp://u:pw@a:5672/,http://u:hunter2@b:5672/")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="at least one"):
        Settings(amqp_url=" , ")
    assert mask_url(NODES) == ("amqp://u:***@10.0.0.1:5672/%2F,amqp://u:***@10.0.0.2:5672/%2F,"
                               "amqps://u:***@mq3:5671/v")
    assert "pw" not in json.dumps(Settings(amqp_url=NODES).masked())


def test_management_urls_default_to_each_node_at_its_amqp_port_plus_10000() -> None:
    assert Settings(amqp_url=NODES).management_urls == [
        "http://u:pw@10.0.0.1:15672", "http://u:pw@10.0.0.2:15672", "https://u:pw@mq3:15671"]
    assert Settings().management_urls == ["http://guest:guest@127.0.0.1:15673"]
    assert Settings(amqp_url="amqp://h:57317/").management_urls == []  # no port to guess
    given = Settings(amqp_url=NODES, management_url="http://a:1, http://b:2")
    assert given.management_urls == ["http://a:1", "http://b:2"]


@pytest.mark.parametrize(("name", "value"), [("stream_replicas", -1), ("stream_replicas", 10),
                                             ("confirm_stall_s", 0), ("confirm_stall_s", 601)])
def test_replica_count_and_stall_allowance_are_bounded(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(**{name: value})
