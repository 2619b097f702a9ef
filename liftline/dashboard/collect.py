"""One reading of everything the dashboard shows, from the servers (blocking).

:func:`collect` runs the cluster status (:func:`liftline.status.gather`) and the
rest (RabbitMQ and Redis details, jobs, dead jobs, the autoscaler's samples) in
two threads at once, so a reading takes about as long as the slower of the two.
Like ``gather`` it never raises for a server out of reach: that server's part
is missing and ``unreachable`` names it. Every wait is bounded by
``settings.query_timeout_s`` (per connection attempt, per reply).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from typing import Any

import pika
import pika.exceptions
import redis

from liftline import status
from liftline.autoscale import record as autoscale_record
from liftline.errors import LiftlineError
from liftline.jobs import topology
from liftline.jobs.dead import list_dead
from liftline.jobs.status import JobStatus
from liftline.queue.connection import connect_blocking
from liftline.queue.management import management_get
from liftline.settings import Settings, mask_url
from liftline.store.redis_store import connect, store_error

DEAD_SHOWN = 50  # dead jobs listed (the queue's length is shown whatever it is)
SAMPLES_SHOWN = 300  # autoscaler evaluations: ten minutes at its default interval
WATCHED_MAX = 20  # job records read back each time (the ones replayed from the page)
_REDIS_INFO = ("redis_version", "redis_mode", "role", "uptime_in_seconds", "connected_clients",
               "used_memory", "used_memory_human", "maxmemory", "aof_enabled",
               "connected_slaves", "master_link_status")
_NODE_FIELDS = ("name", "type", "running", "uptime", "mem_used", "mem_limit", "mem_alarm",
                "disk_free", "disk_free_limit", "disk_free_alarm", "fd_used", "fd_total",
                "sockets_used", "proc_used")


def collect(settings: Settings, *, watched: list[str] | None = None,
            dead_lock: threading.Lock | None = None) -> dict[str, Any]:
    """The dashboard's reading: ``status`` (as ``liftline status --json``), ``redis``,
    ``rabbitmq``, ``jobs``, ``autoscale_samples``, ``unreachable``, ``at``, ``took_s``.

    ``watched``: job ids whose records to read too. ``dead_lock`` is held while
    the dead-letter queue is read (a replay holds it too: a listing keeps the
    dead jobs it reads for a moment, and a replay must find them there).
    """
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="dashboard") as pool:
        cluster = pool.submit(status.gather, settings)
        rabbit = pool.submit(_rabbitmq, settings, dead_lock)
        redis_part = _redis(settings, watched or [])
        snapshot = cluster.result()
        broker = rabbit.result()
    unreachable = list(snapshot["unreachable"])
    for server, part in (("redis", redis_part), ("rabbitmq", broker)):
        error = part.get("error")
        if error and not any(u["server"] == server for u in unreachable):
            unreachable.append({"server": server, "error": error})
    return {
        "at": time.time(), "took_s": round(time.monotonic() - began, 3),
        "status": snapshot, "unreachable": unreachable,
        "redis": redis_part["info"], "rabbitmq": broker["info"],
        "jobs": {"stats": redis_part["job_stats"], "watched": redis_part["watched"],
                 **broker["jobs"]},
        "autoscale_samples": redis_part["samples"],
    }


def _redis(settings: Settings, watched: list[str]) -> dict[str, Any]:
    """Redis' own figures, the job counters, watched job records, autoscaler samples."""
    info: dict[str, Any] = {"url": mask_url(settings.redis_url), "reachable": False}
    out: dict[str, Any] = {"info": info, "job_stats": [], "watched": [], "samples": [],
                           "error": None}
    client = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
    try:
        raw = client.info()
        info.update({k: raw[k] for k in _REDIS_INFO if k in raw}, reachable=True)
        jobs = JobStatus(client, settings.cluster, settings.job_result_ttl_s)
        out["job_stats"] = jobs.stats()
        out["watched"] = [jobs.get(job_id) or {"id": job_id, "state": "unknown"}
                          for job_id in watched[-WATCHED_MAX:]]
        out["samples"] = autoscale_record.samples(client, settings.cluster, SAMPLES_SHOWN)
    except redis.RedisError as exc:
        out["error"] = str(store_error(exc))
    except LiftlineError as exc:
        out["error"] = str(exc)
    finally:
        client.close()
    return out


def _rabbitmq(settings: Settings, dead_lock: threading.Lock | None) -> dict[str, Any]:
    """The broker's identity, its nodes (management API, if configured), the job
    queues' depths and the first dead jobs."""
    info: dict[str, Any] = {"url": mask_url(settings.amqp_url), "reachable": False,
                            "nodes": [], "management": "not configured"}
    jobs: dict[str, Any] = {"ready": None, "dead_in_queue": None, "dead": [],
                            "consumers": None}
    out: dict[str, Any] = {"info": info, "jobs": jobs, "error": None}
    if settings.management_urls:
        info.update(_nodes(settings))
    try:
        conn = connect_blocking(settings, name="liftline-dashboard", attempts=1,
                                timeout_s=settings.query_timeout_s)
    except LiftlineError as exc:
        out["error"] = str(exc)
        return out
    try:
        # What the broker said of itself when the connection opened (AMQP connection.start).
        props = getattr(conn._impl, "server_properties", None) or {}
        info.update(reachable=True, product=_text(props.get("product")),
                    version=_text(props.get("version")),
                    cluster_name=_text(props.get("cluster_name")))
        jobs.update(_depths(conn, settings))
        if dead_lock is None:
            jobs["dead"] = list_dead(settings, DEAD_SHOWN, connection=conn)
        else:
            with dead_lock:
                jobs["dead"] = list_dead(settings, DEAD_SHOWN, connection=conn)
    except (LiftlineError, pika.exceptions.AMQPError, OSError) as exc:
        out["error"] = f"RabbitMQ: {exc!r}"
    finally:
        if conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                conn.close()
    return out


def _depths(conn: pika.BlockingConnection, settings: Settings) -> dict[str, Any]:
    """Ready jobs (the jobs queue and the keyed ones), dead ones, and consumers.

    Passive declares only (as ``list_dead``): nothing is created, and no queue
    yet means no jobs yet.
    """
    dead_queue = topology.JobNames(settings.cluster).dead
    channel = conn.channel()
    found = topology.depths(channel, [*topology.work_queues(settings), dead_queue])
    if channel.is_open:
        channel.close()
    dead = found.pop(dead_queue, (0, 0))[0]
    return {"ready": sum(r for r, _ in found.values()), "dead_in_queue": dead,
            "consumers": sum(c for _, c in found.values())}


def _nodes(settings: Settings) -> dict[str, Any]:
    """RabbitMQ's nodes from the first management API that answers: name, running,
    memory, disk, fds."""
    for url in settings.management_urls:
        nodes = management_get(url, "/api/nodes", timeout_s=settings.query_timeout_s)
        if isinstance(nodes, list):
            return {"management": "ok",
                    "nodes": [{k: n.get(k) for k in _NODE_FIELDS}
                              for n in nodes if isinstance(n, dict)]}
    tried = ", ".join(mask_url(url) for url in settings.management_urls)
    return {"management": f"no answer from {tried}"}


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
