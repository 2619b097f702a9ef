"""`liftline`: a thin click group over library calls."""

from __future__ import annotations

import click

from liftline.app import load_app
from liftline.cli.common import connection_options
from liftline.cli.state import deadletters, status
from liftline.cli.writes import append, delete, get, incr, merge, put
from liftline.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="liftline")
def cli() -> None:
    """liftline: keyed writes acknowledged fast, applied by sharded workers,
    persisted to Redis.

    Start the local stack with `liftline up`; every other command talks to the
    servers named by --amqp-url / --redis-url (or LIFTLINE_AMQP_URL /
    LIFTLINE_REDIS_URL), which default to the local stack's.
    """


@cli.command()
@click.option("--app", "app_spec", metavar="MODULE:ATTR",
              help="The liftline.App with your reducers, e.g. myapp:app.")
@connection_options
def worker(settings: Settings, app_spec: str | None) -> None:
    """Run a partition worker until SIGTERM (then flush, deregister, exit 0)."""
    from liftline.workers.partition_worker import run_worker

    app = load_app(app_spec) if app_spec else None
    raise SystemExit(run_worker(settings, app))


for command in (put, incr, delete, merge, append, get, status, deadletters):
    cli.add_command(command)


def _register_optional() -> None:
    from liftline.cli.up import up

    cli.add_command(up)


_register_optional()


def main() -> None:
    cli()
