"""RabbitMQ 3.10.8 confirms publishes it did not store: a reproduction with plain pika.

    python -m benchmarks.rabbitmq_confirms [--runs 3]

No liftline client code: a local 3-node cluster (liftline.servers.cluster), two
streams with 3 replicas (``s0`` led by the node to be killed, ``s1`` by another),
and one pika SelectConnection on the third node publishing to both, alternately,
with up to 1,024 publishes awaiting confirms (about 1,000 a second). 4 s in, the
leader of ``s0`` is SIGKILLed; it is started again 6 s later; publishing stops at
18 s. Then both streams are read back from the start on a surviving node. A
message counts as lost when the broker acked it and it is in neither stream.

Results: benchmarks/results/rabbitmq-confirms.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pika
from pika.spec import Basic

from benchmarks.report import RESULTS_DIR
from liftline.queue.management import management_get
from liftline.servers.cluster import LocalRabbitCluster

KILL_AT, RESTART_AT, END_AT = 4.0, 10.0, 18.0
WINDOW = 1024


def leaders(cluster: LocalRabbitCluster) -> dict[str, str]:
    for node in cluster.nodes:
        got = management_get(node.management_url, "/api/queues?columns=name,node")
        if isinstance(got, list):
            return {q["name"]: q["node"] for q in got}
    return {}


def one_run(root: Path) -> dict[str, Any]:
    cluster = LocalRabbitCluster(root, size=3)
    cluster.start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls[0]))
        channel = conn.channel()
        for name in ("s0", "s1", "s2"):
            channel.queue_declare(name, durable=True, arguments={
                "x-queue-type": "stream", "x-initial-cluster-size": 3,
                "x-queue-leader-locator": "balanced"})
        conn.close()
        time.sleep(6)  # the management API's figures lag a few seconds
        led = leaders(cluster)
        victim = led["s0"]
        other = next(s for s in ("s1", "s2") if led[s] != victim)
        publisher_node = next(i for i, n in enumerate(cluster.nodes)
                              if n.nodename not in (victim, led[other]))
        sent: dict[int, tuple[int, str, float]] = {}
        acked: set[int] = set()
        nacked: set[int] = set()
        state: dict[str, Any] = {"tag": 0, "inflight": set(), "channel": None}
        start = time.monotonic()

        def on_confirm(frame: Any) -> None:
            m = frame.method
            tags = sorted(t for t in state["inflight"] if t <= m.delivery_tag) if m.multiple \
                else [m.delivery_tag]
            for t in tags:
                state["inflight"].discard(t)
            (nacked if isinstance(m, Basic.Nack) else acked).update(tags)

        def pump() -> None:
            if time.monotonic() - start > END_AT:
                pconn.close()
                return
            for _ in range(2):
                if len(state["inflight"]) >= WINDOW:
                    break
                state["tag"] += 1
                tag = state["tag"]
                stream = "s0" if tag % 2 else other
                state["channel"].basic_publish("", stream, json.dumps([tag, stream]).encode(),
                                               pika.BasicProperties(delivery_mode=2),
                                               mandatory=True)
                sent[tag] = (tag, stream, time.monotonic() - start)
                state["inflight"].add(tag)
            pconn.ioloop.call_later(0.002, pump)

        def on_channel(ch: Any) -> None:
            state["channel"] = ch
            ch.confirm_delivery(on_confirm, callback=lambda _f: pump())

        pconn = pika.SelectConnection(
            pika.URLParameters(cluster.amqp_urls[publisher_node]),
            on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
            on_close_callback=lambda c, _r: c.ioloop.stop())

        def chaos() -> None:
            time.sleep(KILL_AT)
            cluster.kill_node(cluster.index_of(victim))
            time.sleep(RESTART_AT - KILL_AT)
            cluster.start_node(cluster.index_of(victim))

        killer = threading.Thread(target=chaos)
        killer.start()
        pconn.ioloop.start()
        killer.join()
        stored = read_back(cluster.amqp_urls[publisher_node], ["s0", other])
        unanswered = sorted(t for t in sent if t not in acked and t not in nacked)
        lost = sorted(t for t in acked if t not in stored)
        first = unanswered[0] if unanswered else None
        return {
            "victim": victim, "sent": len(sent), "acked": len(acked), "nacked": len(nacked),
            "never_answered": len(unanswered), "acked_not_stored": len(lost),
            "lost_stream_s0": sum(1 for t in lost if sent[t][1] == "s0"),
            "lost_after_first_unanswered": sum(1 for t in lost if first and t > first),
            "lost_before_first_unanswered": sum(1 for t in lost if first and t < first),
            "lost_sent_between_s": [round(sent[lost[0]][2], 2), round(sent[lost[-1]][2], 2)]
            if lost else None,
            "kill_at_s": KILL_AT,
        }
    finally:
        cluster.kill()


def read_back(url: str, streams: list[str]) -> set[int]:
    seen: set[int] = set()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=1000)
    last = [time.monotonic()]

    def got(ch: Any, method: Any, _props: Any, body: bytes) -> None:
        seen.add(json.loads(body)[0])
        ch.basic_ack(method.delivery_tag)
        last[0] = time.monotonic()

    for stream in streams:
        channel.basic_consume(stream, got, arguments={"x-stream-offset": "first"})
    while time.monotonic() - last[0] < 3:
        conn.process_data_events(time_limit=0.2)
    conn.close()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="rabbitmq-confirms-") as tmp:
            runs.append(one_run(Path(tmp)))
        print(f"run {n + 1}: {runs[-1]}", flush=True)
    command = " ".join(["python -m benchmarks.rabbitmq_confirms", *sys.argv[1:]])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "rabbitmq-confirms.json").write_text(json.dumps(runs, indent=2))
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"# RabbitMQ confirms without storing ({date})", "",
             f"Command: `{command}` (plain pika; see its docstring)",
             "", "| run | sent | acked | never answered | acked, not stored | of them after the "
             "first unanswered publish | before it | sent between (s) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | {r['sent']:,} | {r['acked']:,} | {r['never_answered']:,} | "
                     f"{r['acked_not_stored']:,} | {r['lost_after_first_unanswered']:,} | "
                     f"{r['lost_before_first_unanswered']:,} | {r['lost_sent_between_s']} |")
    (RESULTS_DIR / "rabbitmq-confirms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
