"""`liftline up`: the whole local stack in one command."""

from __future__ import annotations

import os

import click

from liftline.cli.common import connection_options
from liftline.settings import Settings
from liftline.stack import LocalStack


@click.command()
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes to start.")
@click.option("--replicas", type=click.IntRange(1, 5), envvar="LIFTLINE_REPLICAS",
              help="Replication factor R: one primary and R-1 standbys per partition (default 2).")
@click.option("--app", "app_spec", metavar="MODULE:ATTR", help="App with your reducers.")
@click.option("--data-dir", envvar="LIFTLINE_DATA_DIR", show_envvar=True,
              help="Where servers keep their data (default .liftline).")
@click.option("--ingest-port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port of the HTTP ingest service on 127.0.0.1.")
@click.option("--no-ingest", is_flag=True, help="Do not start the HTTP ingest service.")
@click.option("--rabbitmq-nodes", type=click.IntRange(1, 5), default=1, show_default=True,
              help="RabbitMQ nodes to start as one cluster (AMQP on 5673, 5674, …; data in "
                   ".liftline/rabbitmq-cluster/); streams and job queues get min(3, N) "
                   "replicas.")
@click.option("--autoscale", "autoscale_bounds", metavar="MIN:MAX",
              help="Run the autoscaler (local pool of MIN..MAX workers, by backlog; "
                   "LIFTLINE_AUTOSCALE_* settings apply) instead of --workers fixed workers.")
@connection_options
def up(settings: Settings, workers: int, replicas: int | None, app_spec: str | None,
       data_dir: str | None, ingest_port: int, no_ingest: bool, rabbitmq_nodes: int,
       autoscale_bounds: str | None) -> None:
    """Start RabbitMQ and Redis from the system binaries (data under .liftline/),
    declare the topology, start workers and the HTTP ingest service
    (http://127.0.0.1:8080); Ctrl-C stops everything it started.

    Servers already running at LIFTLINE_AMQP_URL / LIFTLINE_REDIS_URL are used
    instead of starting new ones when those variables are set.
    """
    if data_dir:
        settings = settings.replace(data_dir=data_dir)
    if replicas:
        settings = settings.replace(replicas=replicas)
    bounds = None
    if autoscale_bounds:
        from liftline.autoscale.process import parse_bounds

        try:
            bounds = parse_bounds(autoscale_bounds)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--autoscale") from exc
        workers = 0  # the autoscaler starts and stops them
    stack = LocalStack(
        settings, workers=workers, app=app_spec,
        reuse_amqp="LIFTLINE_AMQP_URL" in os.environ,
        reuse_redis="LIFTLINE_REDIS_URL" in os.environ,
        say=lambda line: click.echo(line), ingest_port=None if no_ingest else ingest_port,
        autoscale=bounds, rabbitmq_nodes=rabbitmq_nodes,
    )
    try:
        stack.start()
        stack.run_forever()
    finally:
        click.echo("stopping…")
        stack.stop()
