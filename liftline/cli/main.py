"""`liftline`: a thin click group over library calls."""

from __future__ import annotations

import click

from liftline.app import load_app
from liftline.cli.common import connection_options, errors_to_exit
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
              help="The liftline.App with your reducers and jobs, e.g. myapp:app.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=4, show_default=True,
              help="Job handler threads (and the job prefetch).")
@click.option("--pool", type=click.Choice(["threads", "processes"]), default="threads",
              show_default=True,
              help="Run job handlers in threads, or in forked processes for CPU-bound jobs "
                   "(a process that overruns its timeout is killed).")
@click.option("--jobs-only", is_flag=True, help="Run jobs only, no partition duty.")
@click.option("--partitions-only", is_flag=True, help="Hold partitions only, run no jobs.")
@connection_options
def worker(settings: Settings, app_spec: str | None, concurrency: int, pool: str,
           jobs_only: bool, partitions_only: bool) -> None:
    """Run a worker until SIGTERM: partition duty (apply, replicate, flush) and
    background jobs. SIGTERM stops consuming, flushes, hands partitions over,
    finishes running jobs and exits 0."""
    from liftline.workers.partition_worker import run_worker

    if jobs_only and partitions_only:
        raise click.UsageError("--jobs-only and --partitions-only exclude each other")
    app = load_app(app_spec) if app_spec else None
    raise SystemExit(run_worker(settings, app, partitions=not jobs_only,
                                jobs=not partitions_only, concurrency=concurrency,
                                pool=pool))


for command in (put, incr, delete, merge, append, get, status, deadletters):
    cli.add_command(command)


def _register_optional() -> None:
    from liftline.cli.autoscale import autoscale
    from liftline.cli.dashboard import dashboard
    from liftline.cli.ingest import ingest
    from liftline.cli.jobs import jobs
    from liftline.cli.up import up

    cli.add_command(up)
    cli.add_command(ingest)
    cli.add_command(jobs)
    cli.add_command(autoscale)
    cli.add_command(dashboard)


_register_optional()


def main() -> None:
    # Commands without connection options (up, ingest, …) get the same mapping.
    with errors_to_exit():
        cli()
