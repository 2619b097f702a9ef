"""Write and read commands: put, incr, delete, merge, append, get."""

from __future__ import annotations

import json
from typing import Any

import click

from liftline.cli.common import connection_options, echo_json, parse_json_value
from liftline.errors import InvalidWrite
from liftline.producer import Producer
from liftline.reads import OwnerReader, RedisReader
from liftline.settings import Settings
from liftline.tickets import Ticket


def _write(settings: Settings, op: str, key: str, value: Any, arg: Any = None) -> None:
    with Producer(settings) as producer:
        ticket = producer.write(op, key, value, arg)
    click.echo(str(ticket))


@click.command()
@click.argument("key")
@click.argument("value")
@connection_options
def put(settings: Settings, key: str, value: str) -> None:
    """Set KEY to VALUE (JSON). Prints the ticket once RabbitMQ confirmed it."""
    _write(settings, "set", key, parse_json_value(value))


@click.command()
@click.argument("key")
@click.argument("amount", default="1")
@connection_options
def incr(settings: Settings, key: str, amount: str) -> None:
    """Add AMOUNT (int or float, default 1) to KEY. Prints the ticket."""
    parsed = parse_json_value(amount, "AMOUNT")
    if isinstance(parsed, bool) or not isinstance(parsed, int | float):
        raise click.BadParameter("AMOUNT must be a number")
    _write(settings, "incr", key, parsed)


@click.command()
@click.argument("key")
@connection_options
def delete(settings: Settings, key: str) -> None:
    """Delete KEY. Prints the ticket."""
    _write(settings, "delete", key, None)


@click.command()
@click.argument("key")
@click.argument("fields")
@connection_options
def merge(settings: Settings, key: str, fields: str) -> None:
    """Merge the JSON object FIELDS into KEY's dict value. Prints the ticket."""
    _write(settings, "merge", key, parse_json_value(fields, "FIELDS"))


@click.command()
@click.argument("key")
@click.argument("item")
@click.option("--cap", type=click.IntRange(min=1), help="Keep at most this many items.")
@connection_options
def append(settings: Settings, key: str, item: str, cap: int | None) -> None:
    """Append the JSON ITEM to KEY's list. Prints the ticket."""
    _write(settings, "append", key, parse_json_value(item, "ITEM"), cap)


@click.command()
@click.argument("key")
@click.option("--stale", is_flag=True, help="Read the last flushed value from Redis.")
@click.option("--after", "after", metavar="TICKET",
              help="Wait until the write with this ticket is applied (read-your-writes).")
@click.option("--timeout-ms", type=click.IntRange(0, 60_000), default=2000, show_default=True,
              help="How long --after may wait.")
@click.option("--json", "as_json", is_flag=True, help="Print value, version, partition, offset.")
@connection_options
def get(settings: Settings, key: str, stale: bool, after: str | None, timeout_ms: int,
        as_json: bool) -> None:
    """Print KEY's value (JSON) as its owner holds it, or from Redis with --stale.

    Exits 6 when the key does not exist.
    """
    ticket = Ticket.parse(after) if after else None
    if stale and ticket:
        raise InvalidWrite("--stale and --after do not go together")
    reader = RedisReader(settings) if stale else OwnerReader(settings)
    try:
        result = reader.get(key, after=ticket, timeout_ms=timeout_ms)
    finally:
        reader.close()
    if as_json:
        echo_json(result.to_dict())
    elif not result.found:
        click.echo(f"error: key {key!r} not found", err=True)
        raise SystemExit(6)
    else:
        click.echo(json.dumps(result.value, default=lambda b: b.hex()))
