"""One RabbitMQ node against a 3-node cluster (streams replicated 3 ways), same run.

    python -m benchmarks.rabbit_nodes [--writes 300000] [--rounds 2] [--kills 3]

Starts its own Redis, a single RabbitMQ node and a 3-node cluster from the system
binaries (all on loopback, data in a temporary directory, stopped by PID at the end).

- Throughput: one Producer writes ``--writes`` increments (10,000 keys, 16
  partitions) as fast as it can through one worker (R=1); confirmed writes/s and
  end-to-end writes/s (the last write flushed to Redis). Rounds alternate which
  setup goes first.
- Failover, on the cluster: 2 workers (R=2) and a Producer pipelining 3,000 writes/s
  (up to 5,000 awaiting confirms); ``--kills`` times the node leading the most
  partition streams is SIGKILLed, then started again: seconds until the producer
  confirms again (100 acks after the kill), until every partition is applied again,
  until the node's replicas are back online; and at the end, that every counter is
  within [acknowledged, attempted] increments (nothing lost, nothing twice).
- RSS of each node.

Results: benchmarks/results/rabbit-nodes.md and .json.
"""

from __future__ import annotations

import argparse
import collections
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.cluster import Tracker, WorkerProcess, flushed_count, watermarks
from benchmarks.env import cpu_seconds, machine, memory_kb
from benchmarks.progress import Deadline, say
from benchmarks.report import RESULTS_DIR
from liftline import codec
from liftline.cluster import bootstrap
from liftline.cluster.registry import live_members, owners_of
from liftline.errors import LiftlineError
from liftline.producer import Producer
from liftline.queue.connection import connect_blocking
from liftline.queue.management import cluster_view
from liftline.queue.topology import Names
from liftline.servers.base import free_ports
from liftline.servers.cluster import LocalRabbitCluster
from liftline.servers.local import LocalRabbitMQ
from liftline.servers.local_redis import LocalRedis
from liftline.settings import Settings
from liftline.store.keys import Keys

PARTITIONS = 16
KEYS = 10_000


def settings_for(amqp_url: str, management_url: str, redis_url: str, stream_replicas: int,
                 **more: Any) -> Settings:
    """Settings of a fresh cluster name; one worker replica (R=1) unless ``more`` says."""
    values: dict[str, Any] = dict(
        amqp_url=amqp_url, management_url=management_url, redis_url=redis_url,
        cluster=f"b{secrets.token_hex(3)}", partitions=PARTITIONS,
        stream_replicas=stream_replicas, replicas=1)
    return Settings.from_env({}, **{**values, **more})


def drop(settings: Settings, client: redis.Redis) -> None:
    """Delete the run's streams and Redis keys (best effort)."""
    try:
        conn = connect_blocking(settings, attempts=1)
        channel = conn.channel()
        for p in range(settings.partitions):
            channel.queue_delete(Names(settings.cluster).stream(p))
        conn.close()
    except Exception as exc:  # a benchmark's cleanup must not hide its figures
        say(f"cleanup: {exc!r}")
    for pattern in Keys(settings.cluster).patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.unlink(*keys[i:i + 500])


def broker_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def throughput(settings: Settings, client: redis.Redis, writes: int, log_dir: Path,
               broker_pids: list[int]) -> dict[str, float]:
    """Confirmed and end-to-end (flushed) writes/s of ``writes`` increments, flat out,
    and the CPU the RabbitMQ node(s) used per write meanwhile."""
    bootstrap.prepare(settings)
    worker = WorkerProcess(settings, log_dir)
    try:
        worker.wait_registered(client)
        worker.wait_serving(client)
        tracker = Tracker(PARTITIONS)
        with Producer(settings, declare=False) as producer:
            began = time.monotonic()
            cpu_before = broker_cpu(broker_pids)
            for i in range(writes):  # submit blocks while the producer's buffer is full
                tracker.add(producer.submit("incr", f"k{i % KEYS}", 1))
                if i % 5000 == 0:
                    tracker.poll()
            tracker.wait_all(Deadline(300))
            confirmed_s = time.monotonic() - began
            wanted = tracker.confirmed_seq
            deadline = Deadline(300)
            while flushed_count(watermarks(client, settings, producer.producer_id), wanted) \
                    < sum(wanted) and not deadline.passed():
                time.sleep(0.02)
            flushed_s = time.monotonic() - began
            broker_us = (broker_cpu(broker_pids) - cpu_before) / writes * 1e6
        if tracker.failed:
            raise RuntimeError(f"{tracker.failed} writes failed: {tracker.first_error}")
        return {"confirmed_per_s": writes / confirmed_s, "end_to_end_per_s": writes / flushed_s,
                "confirmed_s": confirmed_s, "flushed_s": flushed_s,
                "broker_cpu_us_per_write": broker_us}
    finally:
        worker.stop()
        drop(settings, client)


def primaries_applied(client: redis.Redis, settings: Settings) -> dict[int, int]:
    keys = Keys(settings.cluster)
    members, owners = live_members(client, keys), owners_of(client, keys)
    out = {}
    for p in range(settings.partitions):
        report = members.get(owners.get(p, ""), {}).get("partitions", {}).get(p)
        out[p] = int(report["applied"]) if report and report["role"] == "primary" else -2
    return out


def leaders(settings: Settings) -> tuple[collections.Counter[str], bool]:
    """How many partition streams each node leads, and whether all have 3 replicas online."""
    view = cluster_view(settings, f"liftline.{settings.cluster}.")
    names = Names(settings.cluster)
    queues = [view.queues.get(names.stream(p)) for p in range(settings.partitions)]
    counts = collections.Counter(q.leader for q in queues if q is not None and q.leader)
    online = all(q is not None and q.leader and len(q.online) == 3 for q in queues)
    return counts, online


def wait_for(predicate: Any, timeout_s: float) -> float:
    began = time.monotonic()
    deadline = Deadline(timeout_s)
    while not predicate():
        if deadline.passed():
            raise RuntimeError(f"not within {timeout_s}s: {predicate}")
        time.sleep(0.05)
    return time.monotonic() - began


class Load(threading.Thread):
    """Increments at ``rate``/s with up to ``window`` awaiting confirms; counts what was
    acknowledged and attempted per key."""

    def __init__(self, producer: Producer, rate: float, window: int) -> None:
        super().__init__(daemon=True)
        self.producer, self.rate, self.window = producer, rate, window
        self.halt = threading.Event()
        self.acked_at: collections.deque[float] = collections.deque(maxlen=100_000)
        self.acked: collections.Counter[str] = collections.Counter()
        self.attempted: collections.Counter[str] = collections.Counter()
        self.failed = 0

    def run(self) -> None:
        began, sent = time.monotonic(), 0
        pending: collections.deque[tuple[str, Any]] = collections.deque()
        while not self.halt.is_set() or pending:
            if not self.halt.is_set():
                for _ in range(min(int((time.monotonic() - began) * self.rate) - sent,
                                   self.window - len(pending))):
                    key = f"k{sent % 1000}"
                    self.attempted[key] += 1
                    pending.append((key, self.producer.submit("incr", key, 1)))
                    sent += 1
            while pending and (pending[0][1].done() or self.halt.is_set()):
                key, future = pending.popleft()
                try:
                    future.result(120)
                    self.acked[key] += 1
                    self.acked_at.append(time.monotonic())
                except LiftlineError:
                    self.failed += 1
            time.sleep(0.005)

    def acked_since(self, moment: float) -> int:
        return sum(1 for t in list(self.acked_at) if t > moment)


def failover(cluster: LocalRabbitCluster, redis_url: str, client: redis.Redis, kills: int,
             log_dir: Path) -> dict[str, Any]:
    settings = settings_for(cluster.amqp_url, cluster.management_url, redis_url, 3,
                            replicas=2, heartbeat_s=0.3, member_ttl_s=2.0, flush_interval_ms=100)
    bootstrap.prepare(settings)
    wait_for(lambda: leaders(settings)[1], 60)
    cluster.sync_to_disk()
    workers = []
    for i in range(2):
        (log_dir / f"w{i}").mkdir(exist_ok=True)
        workers.append(WorkerProcess(settings, log_dir / f"w{i}"))
    rounds = []
    producer = Producer(settings, declare=False)
    load = Load(producer, rate=3000, window=5000)
    try:
        for w in workers:
            w.wait_registered(client)
        wait_for(lambda: min(primaries_applied(client, settings).values()) > -2, 60)
        load.start()
        for n in range(kills):
            time.sleep(8)
            counts, _ = leaders(settings)
            node, leading = counts.most_common(1)[0]
            index = cluster.index_of(node)
            at_kill = primaries_applied(client, settings)
            cluster.kill_node(index)
            killed = time.monotonic()
            confirm_s = wait_for(lambda k=killed: load.acked_since(k) >= 100, 60)
            apply_s = wait_for(lambda a=at_kill: all(
                v > a[p] for p, v in primaries_applied(client, settings).items()), 60) + confirm_s
            restarted = time.monotonic()
            cluster.start_node(index)
            start_s = time.monotonic() - restarted
            rejoin_s = wait_for(lambda: leaders(settings)[1], 120) + start_s
            rounds.append({"node": node, "leading": leading, "confirm_s": round(confirm_s, 2),
                           "apply_s": round(apply_s, 2), "node_start_s": round(start_s, 2),
                           "rejoined_s": round(rejoin_s, 2)})
            say(f"kill {n + 1}: {rounds[-1]}")
        time.sleep(5)
    finally:
        load.halt.set()
        load.join(180)
        stats = dict(producer.publisher.stats)
        producer.close()
    keys = Keys(settings.cluster)
    deadline = Deadline(120)
    outside: dict[str, tuple[int, int, int]] = {}
    while not deadline.passed():  # until the last increments are flushed
        values = {}
        for p in range(PARTITIONS):
            for k, v in client.hgetall(keys.data(p)).items():
                values[k.decode()] = codec.unpack(v)[0]
        outside = {k: (load.acked[k], values.get(k, 0), n) for k, n in load.attempted.items()
                   if not load.acked[k] <= values.get(k, 0) <= n}
        if not outside:
            break
        time.sleep(0.5)
    for w in workers:
        w.stop()
    drop(settings, client)
    return {"rounds": rounds, "publisher": stats, "acked": sum(load.acked.values()),
            "refused": load.failed, "counters_outside_bounds": len(outside)}


# What the nodes' logs say around the kills (counted over all three).
_LOG_SIGNS = {
    "channel crashed: {case_clause,{error,nodedown}} in rabbit_stream_queue:init":
        "{case_clause,{error,nodedown}},",
    "consumer refused: no replica on the local node": "does not have a replica on the local node",
    "osiris replica reader exits": "reason: replica_reader_exit",
    "stream coordinator: new leader detected": "rabbit_stream_coordinator: detected a new leader",
}


def log_counts(cluster: LocalRabbitCluster) -> dict[str, int]:
    counts = dict.fromkeys(_LOG_SIGNS, 0)
    for node in cluster.nodes:
        try:
            text = node.node_log.read_text(errors="replace")
        except OSError:
            continue
        for label, sign in _LOG_SIGNS.items():
            counts[label] += text.count(sign)
    return counts


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the servers' data and logs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="liftline-rabbit-nodes-"))
    redis_port, amqp, mgmt, stream, dist, epmd = free_ports(6)
    redis_server = LocalRedis(root / "redis", port=redis_port)
    single = LocalRabbitMQ(root / "single", amqp_port=amqp, management_port=mgmt,
                           stream_port=stream, dist_port=dist, epmd_port=epmd,
                           nodename="single@localhost")
    cluster = LocalRabbitCluster(root / "cluster", size=3)
    command = " ".join(["python -m benchmarks.rabbit_nodes", *sys.argv[1:]])
    results: dict[str, Any] = {"command": command, "machine": machine(),
                               "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                               "load_average_start": load_average()}
    try:
        redis_server.start()
        single.start()
        began = time.monotonic()
        cluster.start()
        results["cluster_start_s"] = round(time.monotonic() - began, 1)
        client = redis.Redis.from_url(redis_server.redis_url)
        setups = {"1 node": (single.amqp_url, single.management_url, 1,
                             [single.node_pid or 0]),
                  "3 nodes": (cluster.amqp_url, cluster.management_url, 3,
                              [n.node_pid or 0 for n in cluster.nodes])}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
        for r in range(args.rounds):
            for name in (list(setups) if r % 2 == 0 else list(reversed(setups))):
                url, mgmt_url, replicas, pids = setups[name]
                got = throughput(settings_for(url, mgmt_url, redis_server.redis_url, replicas),
                                 client, args.writes, root, pids)
                say(f"round {r + 1}, {name}: {got}")
                runs[name].append(got)
        results["throughput"] = runs
        results["rss_mib"] = {n.nodename: round(memory_kb(n.node_pid or 0).get("VmRSS", 0) / 1024)
                              for n in cluster.nodes}
        results["failover"] = failover(cluster, redis_server.redis_url, client, args.kills, root)
        results["broker_log"] = log_counts(cluster)
        results["load_average_end"] = load_average()
        client.close()
    finally:
        cluster.kill()
        single.kill()
        single.stop()  # ends its epmd
        redis_server.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    write(results)


def write(results: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "rabbit-nodes.json").write_text(json.dumps(results, indent=2))
    runs = results["throughput"]
    best = {name: max(r["end_to_end_per_s"] for r in rs) for name, rs in runs.items()}
    lines = [f"# One RabbitMQ node vs a 3-node cluster ({results['date']})", "",
             f"Command: `{results['command']}`; cluster start {results['cluster_start_s']} s; "
             f"load average {results['load_average_start']} at the start, "
             f"{results['load_average_end']} at the end (the machine is shared).", "",
             "| setup | round | confirmed writes/s | end to end (flushed) writes/s | "
             "RabbitMQ CPU µs per write (all nodes) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, rs in runs.items():
        for i, r in enumerate(rs, 1):
            lines.append(f"| {name} | {i} | {r['confirmed_per_s']:,.0f} | "
                         f"{r['end_to_end_per_s']:,.0f} | {r['broker_cpu_us_per_write']:.1f} |")
    median = {name: sorted(r["end_to_end_per_s"] for r in rs)[len(rs) // 2]
              for name, rs in runs.items()}
    cpu = {name: sorted(r["broker_cpu_us_per_write"] for r in rs)[len(rs) // 2]
           for name, rs in runs.items()}
    lines += ["", f"End to end, 3 nodes / 1 node: best {best['3 nodes'] / best['1 node']:.2f}×, "
                  f"median {median['3 nodes'] / median['1 node']:.2f}×; RabbitMQ CPU per write "
                  f"(median) {cpu['3 nodes']:.1f} µs on 3 nodes against {cpu['1 node']:.1f} µs "
                  f"on 1 ({cpu['3 nodes'] / cpu['1 node']:.2f}×).", "",
              "RSS per node (MiB): " + ", ".join(f"{k} {v}" for k, v in
                                                  results["rss_mib"].items()), "",
              "Seconds after the SIGKILL of the node leading the most streams; the node is "
              "started again once both figures are in, and its replicas are online again "
              "that long after its start began:", "",
              "| kill | node (streams led) | confirming again | applying again | node start | "
              "replicas online again |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    fo = results["failover"]
    for i, r in enumerate(fo["rounds"], 1):
        lines.append(f"| {i} | {r['node']} ({r['leading']}) | {r['confirm_s']} | "
                     f"{r['apply_s']} | {r['node_start_s']} | {r['rejoined_s']} |")
    lines += ["", f"Acknowledged {fo['acked']:,}, refused {fo['refused']}, counters outside "
                  f"[acknowledged, attempted]: {fo['counters_outside_bounds']}; publisher: "
                  f"{fo['publisher']}", "",
              "Broker log lines over the run: " + "; ".join(
                  f"{k}: {v}" for k, v in results["broker_log"].items())]
    (RESULTS_DIR / "rabbit-nodes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
