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
@click.option("--redis-sentinel", is_flag=True,
              help="Start a Redis primary and one replica (ports 6380, 6381) and 3 Sentinels "
                   "(26380-26382) instead of one Redis, data in .liftline/redis-sentinel/; "
                   "every process gets the Sentinels' redis+sentinel:// URL (printed), and "
                   "claims and flushes count once the replica holds them.")
@click.option("--redis-cluster", is_flag=True,
              help="Start a Redis Cluster of 3 masters (ports 6380-6382, cluster bus on "
                   "+10000) instead of one Redis, data in .liftline/redis-cluster/; every "
                   "process gets its redis+cluster:// URL (printed). Not with "
                   "--redis-sentinel.")
@click.option("--autoscale", "autoscale_bounds", metavar="MIN:MAX",
              help="Run the autoscaler (local pool of MIN..MAX workers, by backlog; "
                   "LIFTLINE_AUTOSCALE_* settings apply) instead of --workers fixed workers.")
@connection_options
def up(settings: Settings, workers: int, replicas: int | None, app_spec: str | None,
       data_dir: str | None, ingest_port: int, no_ingest: bool, rabbitmq_nodes: int,
       redis_sentinel: bool, redis_cluster: bool, autoscale_bounds: str | None) -> None:
    """Start RabbitMQ and Redis from the system binaries (data under .liftline/),
    declare the topology, start workers and the HTTP ingest service
    (http://127.0.0.1:8080); Ctrl-C stops everything it started.

    Servers already running at LIFTLINE_AMQP_URL / LIFTLINE_REDIS_URL are used
    instead of starting new ones when those variables are set. The URLs it prints
    (and exports to every worker, the ingest service and the autoscaler) are the
    ones to use.
    """
    redis_kind = _redis_kind(settings, redis_sentinel, redis_cluster)
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
        autoscale=bounds, rabbitmq_nodes=rabbitmq_nodes, redis_kind=redis_kind,
    )
    try:
        stack.start()
        stack.run_forever()
    except KeyboardInterrupt:
        # Ctrl-C before run_forever took SIGINT over (while starting, or right after
        # "liftline ready"): the same clean stop, not click's "Aborted!" and exit 1.
        pass
    finally:
        click.echo("stopping…")
        stack.stop()


def _redis_kind(settings: Settings, sentinel: bool, cluster: bool) -> str:
    """single, sentinel or cluster; a usage error for a choice that cannot hold."""
    if sentinel and cluster:
        raise click.UsageError("--redis-sentinel and --redis-cluster are mutually exclusive: "
                               "choose one Redis topology")
    if not (sentinel or cluster):
        return "single"
    flag = "--redis-sentinel" if sentinel else "--redis-cluster"
    if "LIFTLINE_REDIS_URL" in os.environ:
        raise click.UsageError(f"{flag} starts its own Redis, but LIFTLINE_REDIS_URL is set "
                               "(that Redis would be used instead); unset it")
    if not settings.redis_url.startswith("redis://"):
        raise click.UsageError(f"{flag} takes its first port from --redis-url, which must then "
                               f"be redis://127.0.0.1:PORT/0")
    return "sentinel" if sentinel else "cluster"
