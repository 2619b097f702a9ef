"""`liftline jobs …`: submit, status, dead, replay, stats."""

from __future__ import annotations

import click

from liftline.app import load_app
from liftline.cli.common import connection_options, echo_json, parse_json_value
from liftline.cli.state import print_table
from liftline.errors import InvalidWrite, NotFound
from liftline.settings import Settings


@click.group()
def jobs() -> None:
    """Background jobs: submit, inspect, and replay dead ones."""


@jobs.command()
@click.argument("name")
@click.argument("args", default="{}")
@click.option("--key", help="Run after every earlier job with this key.")
@click.option("--id", "job_id", help="Idempotency id: a known id is not run twice.")
@click.option("--app", "app_spec", metavar="MODULE:ATTR", help="Check NAME and ARGS against it.")
@click.option("--wait", "wait_s", type=float, help="Wait this many seconds for the result.")
@connection_options
def submit(settings: Settings, name: str, args: str, key: str | None, job_id: str | None,
           app_spec: str | None, wait_s: float | None) -> None:
    """Enqueue job NAME with keyword ARGS (a JSON object); prints the job id."""
    from liftline.jobs.client import JobClient

    parsed = parse_json_value(args, "ARGS")
    if not isinstance(parsed, dict):
        raise InvalidWrite("ARGS must be a JSON object of keyword arguments")
    with JobClient(settings, load_app(app_spec) if app_spec else None) as client:
        handle = client.enqueue(name, key=key, job_id=job_id, **parsed)
        click.echo(handle.id)
        if wait_s is not None:
            echo_json(handle.result(wait_s))


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@connection_options
def status(settings: Settings, job_id: str, as_json: bool) -> None:
    """State of a job: queued | running | retrying (n) | succeeded | dead."""
    from liftline.jobs.client import JobClient

    with JobClient(settings) as client:
        record = client.status.get(job_id)
    if record is None:
        raise NotFound(f"job {job_id} is unknown (or its record expired)")
    if as_json:
        echo_json(record)
        return
    state = record["state"]
    if state == "retrying":
        state = f"retrying ({record['attempt']})"
    click.echo(f"{state}  job={record.get('name')} attempt={record['attempt']}")
    if record.get("error"):
        click.echo(f"last error: {record['error']}")
    if "result" in record:
        echo_json(record["result"])


@jobs.command()
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@connection_options
def dead(settings: Settings, limit: int, as_json: bool) -> None:
    """The dead-letter queue: id, job, error, attempts."""
    from liftline.jobs.dead import list_dead

    records = list_dead(settings, limit)
    if as_json:
        echo_json(records)
    elif not records:
        click.echo("no dead jobs")
    else:
        print_table(records, [("id", "ID"), ("job", "JOB"), ("attempts", "ATTEMPTS"),
                              ("error", "ERROR")])


@jobs.command()
@click.argument("job_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Replay every dead job.")
@connection_options
def replay(settings: Settings, job_ids: tuple[str, ...], everything: bool) -> None:
    """Put dead jobs back in their queue as new first attempts."""
    from liftline.jobs.dead import replay as do_replay

    if bool(job_ids) == everything:
        raise click.UsageError("give job ids or --all")
    done = do_replay(settings, None if everything else list(job_ids))
    click.echo(f"replayed {len(done)} job(s)")


@jobs.command()
@click.option("--json", "as_json", is_flag=True)
@connection_options
def stats(settings: Settings, as_json: bool) -> None:
    """Per job name: queued, running, retrying, succeeded, failed attempts, dead, rate."""
    from liftline.jobs.status import JobStatus
    from liftline.store.redis_store import connect

    client = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
    try:
        rows = JobStatus(client, settings.cluster, settings.job_result_ttl_s).stats()
    finally:
        client.close()
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no jobs yet")
    else:
        print_table(rows, [("name", "JOB"), ("queued", "QUEUED"), ("running", "RUNNING"),
                           ("retrying", "RETRYING"), ("succeeded", "DONE"),
                           ("failed_attempts", "FAILED"), ("dead", "DEAD"),
                           ("rate_per_s", "RATE/S")])
