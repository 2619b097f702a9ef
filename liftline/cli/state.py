"""Commands that show cluster state: status, deadletters."""

from __future__ import annotations

from typing import Any

import click

from liftline import status as status_mod
from liftline.cli.common import connection_options, echo_json
from liftline.settings import Settings
from liftline.store.redis_store import RedisStore, connect


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """A plain aligned table of ``rows`` with (field, header) columns."""
    cells = [[h for _, h in columns]] + [[_cell(r.get(f)) for f, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        click.echo("  ".join(c.rjust(w) if i else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def status(settings: Settings, as_json: bool) -> None:
    """Members and, per partition: owner, epoch, applied and flushed offsets,
    stream bounds, lag, keys and retention margin (entries the stream may still
    drop before it reaches unflushed data)."""
    snapshot = status_mod.gather(settings)
    if as_json:
        echo_json(snapshot)
        return
    click.echo(f"cluster {snapshot['cluster']}: {snapshot['partitions']} partitions, "
               f"{len(snapshot['members'])} live worker(s)")
    if snapshot["members"]:
        click.echo("")
        members = [{**m, "held": len(m["partitions"])} for m in snapshot["members"]]
        print_table(members, [("id", "MEMBER"), ("host", "HOST"), ("pid", "PID"),
                              ("heartbeat_age_s", "HEARTBEAT_AGE_S"), ("held", "PARTITIONS")])
    click.echo("")
    rows = [{**r, "standbys": ",".join(r["standbys"]) or None,
             "replica_lag": " ".join(f"{h['lag']}" for h in r["replicas"]) or None}
            for r in snapshot["partition_state"]]
    print_table(rows, [
        ("partition", "P"), ("primary", "PRIMARY"), ("standbys", "STANDBYS"), ("epoch", "EPOCH"),
        ("applied_offset", "APPLIED"), ("flushed_offset", "FLUSHED"),
        ("stream_tail", "TAIL"), ("lag", "LAG"), ("replica_lag", "REPLICA_LAGS"),
        ("keys", "KEYS"), ("retention_margin", "MARGIN"), ("flush_age_s", "FLUSH_AGE_S"),
    ])
    for warning in snapshot["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@click.command()
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def deadletters(settings: Settings, limit: int, as_json: bool) -> None:
    """Writes and messages the workers could not apply, newest first, with the reason."""
    client = connect(settings.redis_url)
    try:
        store = RedisStore(client, settings.cluster)
        partitions = store.cluster_partitions() or settings.partitions
        records = store.dead_letters(partitions, limit)
    finally:
        client.close()
    if as_json:
        echo_json(records)
        return
    if not records:
        click.echo("no dead letters")
        return
    print_table(records, [("partition", "P"), ("offset", "OFFSET"), ("index", "INDEX"),
                          ("op", "OP"), ("key", "KEY"), ("reason", "REASON")])
