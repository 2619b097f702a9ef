"""`liftline autoscale`: set the worker count from the backlog, every interval."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import click

from liftline.cli.common import connection_options
from liftline.settings import Settings

# flag name -> Settings field; a flag left out keeps the LIFTLINE_AUTOSCALE_* value.
_FLAGS = {
    "min_workers": "autoscale_min", "max_workers": "autoscale_max",
    "target": "autoscale_target", "interval": "autoscale_interval_s",
    "scale_down_after": "autoscale_scale_down_after_s", "max_step": "autoscale_max_step",
    "keep_replicas": "autoscale_keep_replicas", "backend": "autoscale_backend",
    "service": "autoscale_service", "command": "autoscale_command",
    "metrics_host": "autoscale_metrics_host", "metrics_port": "autoscale_metrics_port",
    "stop_timeout": "autoscale_stop_timeout_s", "replicas": "replicas",
}


@click.command()
@click.option("--min", "min_workers", type=click.IntRange(0, 1000),
              help="Fewest workers (default 1).")
@click.option("--max", "max_workers", type=click.IntRange(1, 1000),
              help="Most workers (default 6).")
@click.option("--target", type=click.IntRange(1), help="Backlog per worker: writes not yet "
              "applied plus jobs not done (default 5000).")
@click.option("--interval", type=click.FloatRange(0.05, 3600), help="Seconds between "
              "decisions (default 2).")
@click.option("--scale-down-after", type=click.FloatRange(0), help="Quiet window: seconds the "
              "backlog must need fewer workers before any is stopped (default 30).")
@click.option("--max-step", type=click.IntRange(0), help="Workers added or removed per "
              "decision; 0 = no limit (default).")
@click.option("--keep-replicas/--no-keep-replicas", default=None, help="Never fewer workers "
              "than the replication factor R, so every partition keeps R replicas.")
@click.option("--replicas", type=click.IntRange(1, 5), envvar="LIFTLINE_REPLICAS",
              help="Replication factor R of the workers it starts (default 2).")
@click.option("--dry-run", is_flag=True, help="Print each decision and its inputs; change "
              "nothing.")
@click.option("--backend", type=click.Choice(["local", "compose", "command"]),
              help="local: a pool of `liftline worker` processes (default); compose: docker "
              "compose up --scale SERVICE=N; command: run --command with {n}.")
@click.option("--service", help="Compose service to scale (default worker).")
@click.option("--command", help="Command for --backend command, e.g. './scale.sh {n}'.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus "
              "/metrics (and /backlog JSON, /healthz) on this port; 0 = off (default).")
@click.option("--metrics-host", help="Address of the metrics endpoint (default 127.0.0.1).")
@click.option("--stop-timeout", type=click.FloatRange(0.1), help="Seconds a SIGTERMed local "
              "worker gets to hand over before SIGKILL (default 60).")
@click.option("--app", "app_spec", metavar="MODULE:ATTR", help="App the local workers load.")
@click.option("--worker-args", default="", help="Extra arguments of each local worker, "
              "e.g. '--concurrency 8'.")
@click.option("--log-dir", type=click.Path(file_okay=False), help="Where local workers log "
              "(default DATA_DIR/logs/workers).")
@connection_options
def autoscale(settings: Settings, dry_run: bool, app_spec: str | None, worker_args: str,
              log_dir: str | None, **flags: Any) -> None:
    """Set the worker count to clamp(ceil(backlog / target), min, max) every
    interval: scale up at once, scale down only after the quiet window. The
    backlog is the writes the partitions' primaries have not applied yet plus
    the jobs queued or running. Each decision is logged with its inputs and
    shown by `liftline status`. SIGTERM stops it; the local backend then stops
    its workers gracefully."""
    from liftline.autoscale.loop import Autoscaler
    from liftline.autoscale.scalers import DryRun, Scaler, make_scaler
    from liftline.cluster.registry import live_members
    from liftline.store.keys import Keys
    from liftline.store.redis_store import connect

    if logging.getLogger().getEffectiveLevel() > logging.INFO and not dry_run:
        # Its decisions are what this command is for: log them without -v.
        logging.getLogger("liftline.autoscale").setLevel(logging.INFO)
    changes = {_FLAGS[name]: value for name, value in flags.items() if value is not None}
    settings = settings.replace(**changes)
    client = connect(settings.redis_url)
    try:
        live = len(live_members(client, Keys(settings.cluster)))
    finally:
        client.close()
    logs = Path(log_dir) if log_dir else settings.data_path / "logs" / "workers"
    scaler: Scaler
    if dry_run:
        scaler = DryRun(live)
    else:
        scaler = make_scaler(settings, log_dir=logs, app=app_spec,
                             worker_args=tuple(shlex.split(worker_args)), start=live)
    scaler_name = "dry run" if dry_run else settings.autoscale_backend
    click.echo(f"autoscaling cluster {settings.cluster!r} ({scaler_name}): "
               f"{settings.autoscale_min}..{settings.autoscale_max} workers, target "
               f"{settings.autoscale_target} per worker, every {settings.autoscale_interval_s:g}s,"
               f" scale down after {settings.autoscale_scale_down_after_s:g}s quiet", err=True)
    Autoscaler(settings, scaler, dry_run=dry_run,
               echo=lambda line: click.echo(line)).run()
