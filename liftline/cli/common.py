"""Options shared by every command, logging setup, and error → exit code mapping."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from liftline.errors import LiftlineError
from liftline.settings import Settings

F = Callable[..., Any]


def connection_options(fn: F) -> F:
    """--amqp-url, --redis-url, --cluster, --partitions, -v, --log-format; builds ctx.obj."""

    @click.option("--amqp-url", envvar="LIFTLINE_AMQP_URL", show_envvar=True,
                  help="RabbitMQ URL (default: the local stack's).")
    @click.option("--redis-url", envvar="LIFTLINE_REDIS_URL", show_envvar=True,
                  help="Redis URL (default: the local stack's).")
    @click.option("--cluster", envvar="LIFTLINE_CLUSTER", show_envvar=True,
                  help="Cluster namespace (default: 'default').")
    @click.option("--partitions", type=int, envvar="LIFTLINE_PARTITIONS", show_envvar=True,
                  help="Partition count; must match the cluster's (default 16).")
    @click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
    @click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                  help="Log line format.")
    @functools.wraps(fn)
    def wrapper(*args: Any, amqp_url: str | None, redis_url: str | None, cluster: str | None,
                partitions: int | None, verbose: int, log_format: str, **kwargs: Any) -> Any:
        configure_logging(verbose, log_format)
        with errors_to_exit():
            settings = Settings.from_env(
                amqp_url=amqp_url, redis_url=redis_url, cluster=cluster, partitions=partitions
            )
            return fn(*args, settings=settings, **kwargs)

    return wrapper


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": record.created, "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))


class errors_to_exit:
    """Turn a LiftlineError into a one-line message and its named exit code."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None and isinstance(exc, LiftlineError):
            click.echo(f"error: {exc} [{type(exc).__name__}]", err=True)
            sys.exit(exc.exit_code)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def parse_json_value(text: str, what: str = "VALUE") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{what} must be JSON ({exc.msg}); quote strings, e.g. '\"text\"'"
        ) from exc
