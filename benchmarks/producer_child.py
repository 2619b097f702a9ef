"""One producer process of the multi-process run: ``python -m benchmarks.producer_child``.

Protocol (JSON lines; stdout carries nothing else, progress goes to stderr): the child
connects, confirms one warm-up write and prints ``{"ready": pid}``; it then waits for
one line on stdin, runs its share of the workload (ops ``index``, ``index + of``, …
of the producer mix) through a Producer of its own, and prints its counts, its CPU
seconds and the messages it published, then closes the Producer and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

from benchmarks.cluster import settings_for
from benchmarks.producer_load import run_load
from benchmarks.workload import mixed_ops
from liftline.producer import Producer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.producer_child")
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--writes", type=int, required=True, help="of the whole run")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--of", type=int, required=True)
    parser.add_argument("--many", action="store_true", help="submit_many in chunks of 1,000")
    parser.add_argument("--submit-limit", type=float, default=60.0)
    parser.add_argument("--confirm-limit", type=float, default=60.0)
    args = parser.parse_args(argv)
    ops = mixed_ops(args.writes)[args.index::args.of]
    settings = settings_for(args.amqp_url, args.redis_url, args.cluster)
    producer = Producer(settings, declare=False)  # the parent declared the topology
    try:
        producer.write("set", f"warmup:{args.index}", 0, timeout=30)
        gc.collect()  # as the threaded cases: from a collected heap
        _say({"ready": os.getpid()})
        if not sys.stdin.readline():
            return 1  # the parent went away
        published = producer.publisher.published
        cpu = time.process_time()
        load = run_load(producer, ops, many=args.many, submit_limit_s=args.submit_limit,
                        confirm_limit_s=args.confirm_limit)
        _say({**load.as_dict(), "cpu_s": round(time.process_time() - cpu, 3),
              "messages": producer.publisher.published - published})
    finally:
        producer.close()
    return 0


def _say(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
