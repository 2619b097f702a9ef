"""The ski resort's load client: ``python -m examples.skiresort.client``.

Posts lift rides as the course's clients do (32 threads x 1,000 rides, then up
to 200 threads for the rest), with up to 5 retries on a 5xx or a connection
error, prints successes, failures, wall time, throughput and latency, writes a
CSV of every request and a PNG of throughput over time, then reads back every
skier's day vertical and the day's ``numSkiers`` and reports every difference
from the fold of the rides that got 201. Exit status: 0 when there were no
failures and no difference, 1 otherwise, 2 for bad usage.

    python -m examples.skiresort.client --url http://127.0.0.1:8080 --total 64000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from examples.skiresort.load import Plan, run
from examples.skiresort.readback import read_back
from examples.skiresort.report import summary, write_csv, write_png


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.skiresort.client",
                                description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080", help="base URL of the service")
    p.add_argument("--total", type=int, default=200_000, help="lift rides to post")
    p.add_argument("--threads", type=int, default=200, help="threads of phase 2 (at most)")
    p.add_argument("--phase1-threads", type=int, default=32, help="threads of phase 1")
    p.add_argument("--phase1-rides", type=int, default=1000, help="rides per phase-1 thread")
    p.add_argument("--retries", type=int, default=5, help="resends after a 5xx or an error")
    p.add_argument("--skiers", type=int, default=100_000, help="skier ids drawn from 1..N")
    p.add_argument("--resorts", type=int, default=10, help="resort ids drawn from 1..N")
    p.add_argument("--season", default="2025")
    p.add_argument("--day", type=int, default=1)
    p.add_argument("--no-wait-time", action="store_true",
                   help="send 2.0 bodies {time, liftID} (default: 1.16's, with waitTime)")
    p.add_argument("--seed", type=int, default=6650, help="the rides drawn are this seed's")
    p.add_argument("--read-back", choices=["after", "stale", "none"], default="after",
                   help="after: wait for the newest ticket of each partition and producer to "
                        "be applied, read the owners; stale: to be persisted, read Redis")
    p.add_argument("--read-threads", type=int, default=32)
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds to wait before reading a server that gives no tickets")
    p.add_argument("--out", default="loadtest", help="directory for the CSV, PNG and JSON")
    p.add_argument("--drop", type=int, default=0, metavar="N",
                   help="negative control: count every N-th ride as answered 201 without "
                        "sending it (the read-back must then find differences)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.total < 1 or args.threads < 1 or args.phase1_threads < 1 or args.retries < 0:
        print("error: --total, --threads and --phase1-threads must be >= 1, --retries >= 0",
              file=sys.stderr)
        return 2
    plan = Plan(args.url.rstrip("/"), args.total, args.threads, args.phase1_threads,
                args.phase1_rides, args.retries, skiers=args.skiers, resorts=args.resorts,
                season=args.season, day=args.day, wait_time=not args.no_wait_time,
                seed=args.seed, drop=args.drop)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rides = plan.rides()
    print(f"posting {plan.total:,} lift rides to {plan.base_url}")
    result = run(plan, rides)
    figures = summary(result)
    lat = figures["latency_ms"]
    print(f"successes {figures['successes']:,}  failures {figures['failures']:,}  "
          f"retries {figures['retries']:,}  wall {figures['wall_s']:.2f} s  "
          f"throughput {figures['throughput_per_s']:,.0f} rides/s")
    print(f"latency ms: mean {lat['mean']}  median {lat['median']}  p99 {lat['p99']}  "
          f"max {lat['max']}")
    if figures["failed_statuses"]:
        print(f"failed: {figures['failed_statuses']}")
    write_csv(result, rides, out / "requests.csv")
    write_png(result, out / "throughput.png")
    print(f"wrote {out / 'requests.csv'} ({figures['requests']:,} requests) and "
          f"{out / 'throughput.png'}")
    figures["read_back"] = None
    clean = figures["failures"] == 0
    if args.read_back != "none":
        began = time.time()
        back = read_back(result, rides, args.read_back, args.read_threads, args.settle)
        figures["read_back"] = {
            "mode": back.mode, "tickets_awaited": back.tickets_awaited,
            "wait_s": round(back.wait_s, 2), "read_s": round(back.read_s, 2),
            "skier_days": back.skier_days, "resort_days": back.resort_days,
            "differences": len(back.differences), "errors": back.errors[:20],
            "first_differences": back.differences[:20]}
        how = {"after": "consistency=primary after the newest ticket of each partition and "
                        "producer was applied",
               "stale": "consistency=stale after the newest ticket of each partition and "
                        "producer was persisted",
               "settle": f"after a {args.settle:g} s wait (the server gave no tickets)"}
        print(f"read-back ({how[back.mode]}): {back.skier_days:,} skier-days and "
              f"{back.resort_days} resort-days in {time.time() - began:.1f} s: "
              f"{len(back.differences)} difference(s), {len(back.errors)} error(s)")
        for diff in back.differences[:10]:
            print(f"  {diff['what']} {diff['path']}: expected {diff['expected']}, "
                  f"got {diff['got']}")
        clean = clean and back.clean
    (out / "summary.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
