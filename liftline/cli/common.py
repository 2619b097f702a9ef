"""Options shared by every command, logging setup, and error → exit code mapping."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import pika.exceptions
import redis

from liftline.errors import BrokerError, LiftlineError, StoreError
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
    # pika logs every failed connection attempt at ERROR with a traceback; liftline
    # retries and reports them itself in one line, so pika speaks only at -vv.
    logging.getLogger("pika").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


UNEXPECTED_EXIT = 1
# Where an unexpected failure's traceback goes (a user sees one line and this path).
CRASH_LOG = Path(".liftline") / "logs" / "cli-errors.log"


class errors_to_exit:
    """Turn any failure into a one-line message on stderr and a named exit code.

    A LiftlineError prints its message and exits with its ``exit_code``; a driver
    error that escaped wrapping counts as the server's (Redis 5, RabbitMQ 4);
    anything else is unexpected: one line with where the traceback was written,
    exit 1. click's own exits (usage errors, --help, Ctrl-C) pass through.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None or isinstance(exc, click.exceptions.ClickException | click.exceptions.Exit
                                     | click.exceptions.Abort | SystemExit | KeyboardInterrupt):
            return
        if isinstance(exc, LiftlineError):
            fail(f"{exc} [{type(exc).__name__}]", exc.exit_code)
        if isinstance(exc, redis.RedisError):
            fail(f"Redis: {exc} [{type(exc).__name__}]", StoreError.exit_code)
        if isinstance(exc, pika.exceptions.AMQPError):
            fail(f"RabbitMQ: {exc!r} [{type(exc).__name__}]", BrokerError.exit_code)
        where = _write_crash_log(exc_type, exc, tb)
        fail(f"unexpected {type(exc).__name__}: {exc} (traceback in {where})", UNEXPECTED_EXIT)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _write_crash_log(exc_type: Any, exc: BaseException, tb: Any) -> str:
    text = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} liftline {' '.join(sys.argv[1:])}\n" + \
        "".join(traceback.format_exception(exc_type, exc, tb))
    for path in (CRASH_LOG, Path(tempfile.gettempdir()) / f"liftline-cli-{os.getuid()}.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as out:
                out.write(text)
            return str(path.resolve())
        except OSError:
            continue
    return "nowhere: no writable log path"


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
