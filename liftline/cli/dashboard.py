"""`liftline dashboard`: the live dashboard, for clusters without the HTTP service."""

from __future__ import annotations

import ipaddress

import click

from liftline.cli.common import connection_options
from liftline.settings import Settings


@click.command()
@click.option("--host", envvar="LIFTLINE_DASHBOARD_HOST", show_envvar=True,
              help="Address to listen on (default 127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), envvar="LIFTLINE_DASHBOARD_PORT",
              show_envvar=True, help="Port to listen on (default 8090; 0: any free port).")
@click.option("--tokens", metavar="TOKEN[,TOKEN…]",
              help="Bearer tokens that the JSON view and the replay of dead jobs require "
                   "(default: the HTTP service's, LIFTLINE_INGEST_TOKENS; none: no token). "
                   "Prefer the variable: a flag shows in the process list.")
@click.option("--management-url", envvar="LIFTLINE_MANAGEMENT_URL", show_envvar=True,
              metavar="http://user:pass@host:15672",
              help="RabbitMQ management API, for the nodes' memory, disk and alarms "
                   "(without it the page shows the AMQP server only).")
@connection_options
def dashboard(settings: Settings, host: str | None, port: int | None, tokens: str | None,
              management_url: str | None) -> None:
    """Serve the live dashboard at http://HOST:PORT/dashboard until Ctrl-C.

    The page shows, updated every second: the members, every partition (primary,
    standbys, epoch, applied / flushed / tail, lag, flush age, retention
    margin), writes/s and lag over the last ten minutes, the autoscaler's
    decisions, RabbitMQ and Redis, and the jobs (queued, running, retrying,
    dead), with a Replay button for each dead job. It loads nothing from
    elsewhere. The HTTP ingest service (`liftline ingest`, `liftline up`)
    serves the same page at /dashboard.

    With tokens, the page asks for one (kept in the browser tab only) and sends
    it as `Authorization: Bearer`; the JSON view and replay answer 401 without it.
    """
    import logging

    from liftline.dashboard.entry import serve
    from liftline.ingest.app import parse_tokens

    settings = settings.replace(
        dashboard_host=host or settings.dashboard_host,
        dashboard_port=settings.dashboard_port if port is None else port,
        management_url=management_url or settings.management_url,
    )
    chosen = parse_tokens(settings.ingest_tokens if tokens is None else tokens)
    if not chosen and not _loopback(settings.dashboard_host):
        click.echo(f"warning: listening on {settings.dashboard_host} without tokens: anyone "
                   "who reaches it sees the cluster and can replay dead jobs", err=True)
    level = logging.getLogger().getEffectiveLevel()
    serve(settings, host=settings.dashboard_host, port=settings.dashboard_port, tokens=chosen,
          log_level="info" if level <= logging.INFO else "warning", announce=click.echo)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
