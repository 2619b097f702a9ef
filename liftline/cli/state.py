"""Commands that show cluster state: status, deadletters."""

from __future__ import annotations

import time
from typing import Any

import click

from liftline import status as status_mod
from liftline.cli.common import connection_options, echo_json
from liftline.errors import PartialAnswer
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
    stream bounds, lag, keys, retention margin (entries the stream may still
    drop before it reaches unflushed data), writes missing from the stream, and,
    from the RabbitMQ management API, the stream's leader and replicas online;
    then the RabbitMQ nodes up or down and where the job queues' leaders are."""
    snapshot = status_mod.gather(settings)
    if as_json:
        echo_json(snapshot)
        _partial(snapshot)
        return
    click.echo(f"cluster {snapshot['cluster']}: {snapshot['partitions']} partitions, "
               f"{len(snapshot['members'])} live worker(s)")
    if snapshot["members"]:
        click.echo("")
        members = [{**m, "held": len(m["partitions"])} for m in snapshot["members"]]
        print_table(members, [("id", "MEMBER"), ("host", "HOST"), ("pid", "PID"),
                              ("heartbeat_age_s", "HEARTBEAT_AGE_S"), ("held", "PARTITIONS")])
    click.echo("")
    broker = snapshot.get("rabbitmq")
    rows = [{**r, "standbys": ",".join(r["standbys"]) or None,
             "replica_lag": " ".join(f"{h['lag']}" for h in r["replicas"]) or None,
             "leader": _short(r.get("stream_leader")),
             "online": f"{len(r['stream_online'])}/{len(r['stream_members'])}"
             if r.get("stream_members") else None}
            for r in snapshot["partition_state"]]
    columns = [
        ("partition", "P"), ("primary", "PRIMARY"), ("standbys", "STANDBYS"), ("epoch", "EPOCH"),
        ("applied_offset", "APPLIED"), ("flushed_offset", "FLUSHED"),
        ("stream_tail", "TAIL"), ("lag", "LAG"), ("replica_lag", "REPLICA_LAGS"),
        ("keys", "KEYS"), ("retention_margin", "MARGIN"), ("flush_age_s", "FLUSH_AGE_S"),
        ("missing_writes", "MISSING"),
    ]
    if broker is not None:
        columns += [("leader", "STREAM_LEADER"), ("online", "ONLINE")]
    print_table(rows, columns)
    if broker is not None:
        click.echo("")
        click.echo("rabbitmq nodes: " + ", ".join(
            f"{n['name']} {'up' if n['running'] else 'DOWN'}" for n in broker["nodes"]))
        leaders: dict[str, int] = {}
        for q in broker["job_queues"]:
            leaders[_short(q["leader"]) or "-"] = leaders.get(_short(q["leader"]) or "-", 0) + 1
        if leaders:
            click.echo(f"job queues ({len(broker['job_queues'])}), leaders: " + ", ".join(
                f"{node} {n}" for node, n in sorted(leaders.items())))
    if snapshot.get("autoscaler"):
        click.echo("")
        click.echo(autoscaler_line(snapshot["autoscaler"]))
    for warning in snapshot["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    _partial(snapshot)


def _short(node: str | None) -> str | None:
    """``r1@localhost`` → ``r1``: node names are long and share their host part."""
    return None if node is None else node.split("@", 1)[0]


def _partial(snapshot: dict[str, Any]) -> None:
    """PartialAnswer (exit 12) naming each server the snapshot could not reach."""
    if snapshot["unreachable"]:
        raise PartialAnswer("could not reach " + "; ".join(
            f"{u['server']} ({u['error']})" for u in snapshot["unreachable"]))


def autoscaler_line(state: dict[str, Any]) -> str:
    """The autoscaler's last decision (and last change of the pool) in one or two lines."""
    last = state.get("last") or {}
    pool = state.get("pool") or {}
    line = (f"autoscaler ({pool.get('backend', '?')}{', dry run' if last.get('dry_run') else ''},"
            f" {state['age_s']:.1f}s ago): {last.get('action')} - backlog {last.get('backlog')}"
            f" (streams {last.get('stream_backlog')}, jobs {last.get('job_backlog')}), "
            f"rate {last.get('rate', 0):+.0f}/s, current {last.get('current')}, desired "
            f"{last.get('desired')}: {last.get('reason')}")
    change = state.get("change")
    if change and change.get("at") != last.get("at"):
        line += (f"\nlast change: {change['action']} {change['current']} -> {change['desired']}"
                 f" at {time.strftime('%H:%M:%S', time.localtime(change['at']))}: "
                 f"{change['reason']}")
    return line


@click.command()
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@connection_options
def deadletters(settings: Settings, limit: int, as_json: bool) -> None:
    """Writes and messages the workers could not apply, newest first, with the reason."""
    client = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
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
