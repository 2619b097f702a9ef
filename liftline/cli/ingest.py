"""`liftline ingest`: the HTTP ingest service."""

from __future__ import annotations

import click

from liftline.cli.common import connection_options
from liftline.settings import Settings


@click.command()
@click.option("--host", envvar="LIFTLINE_INGEST_HOST", show_envvar=True,
              help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), envvar="LIFTLINE_INGEST_PORT",
              show_envvar=True, help="Port to listen on (default 8080).")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port; each is one producer.")
@click.option("--app", "app_spec", metavar="MODULE:ATTR", envvar="LIFTLINE_INGEST_APP",
              help="App whose reducers are accepted as ops; its module's "
                   "ingest_routes(api, service) adds routes (e.g. examples.skiresort:app).")
@connection_options
def ingest(settings: Settings, host: str | None, port: int | None, processes: int,
           app_spec: str | None) -> None:
    """Serve HTTP writes: POST /v1/writes answers 202 and a ticket once RabbitMQ
    confirmed the write, 503 + Retry-After when it cannot within
    ingest_publish_timeout_s. Reads, ticket status, /metrics, /openapi.json, and
    the live dashboard at /dashboard (its data and replay need a token when the
    service has tokens)."""
    import logging

    from liftline.app import load_app
    from liftline.dashboard.entry import INGEST_FACTORY
    from liftline.ingest.server import serve

    settings = settings.replace(
        ingest_host=host or settings.ingest_host,
        ingest_port=settings.ingest_port if port is None else port,
        ingest_app=app_spec or settings.ingest_app,
    )
    if settings.ingest_app:
        load_app(settings.ingest_app)  # fail here, with a clear message, not in each process
    level = logging.getLogger().getEffectiveLevel()
    serve(settings, processes=processes, factory=INGEST_FACTORY,
          log_level="debug" if level <= logging.DEBUG else
          "info" if level <= logging.INFO else "warning")
