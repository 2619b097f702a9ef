"""The cluster scenario's figures and its report, made from the parts that finished.

``figures`` adds the median failover times, the recovery time (judged against
``RECOVERY_TARGET_S`` and marked failed when recovery did not complete) and the R=1 and
R=2 writes/s with their ratio to the run's results. It then writes ``cluster.md`` and
``cluster.json`` beside latest.md. ``cluster_markdown`` renders that report: one section
for each part that finished, and a closing line that names every part that did not.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.cluster_nodes import FAILOVER_LOAD_PER_S, FAST
from benchmarks.context import Context, write_side_report
from benchmarks.progress import say

RECOVERY_TARGET_S = 10.0


def figures(ctx: Context, parts: dict[str, Any]) -> None:
    add = ctx.results.add
    ttl = FAST["member_ttl_s"]
    runs = parts.get("failover") or []
    for key, label in (("claim_s", "claim (epoch bump in Redis)"),
                       ("first_flush_s", "first flush by the new primary"),
                       ("applied_reported_s", "new primary reports applied past the kill")):
        values = [r[key] for r in runs if r[key] is not None]
        add("cluster", f"failover.{key}", f"failover, kill → {label}, median of "
            f"{len(values)} (TTL {ttl:.0f} s, heartbeat {FAST['heartbeat_s']} s)",
            round(statistics.median(values), 2) if values else None, "s",
            note=", ".join(f"{v:.2f}" for v in values))
    rec = parts.get("recovery")
    if rec:
        fig = add("cluster", "recovery", f"recovery of {rec['keys']:,} keys + "
                  f"{rec['tail_writes']:,} tail writes: fresh worker start → all partitions "
                  "taken and applied to the stream tail", rec.get("recovery_s"), "s",
                  target=RECOVERY_TARGET_S, target_kind="max")
        if rec.get("recovery_s") is None:
            fig.passed = False
        add("cluster", "recovery_taken", "recovery: start → every partition taken (report)",
            rec.get("all_taken_s"), "s")
        add("cluster", "recovery_took_sum", "recovery: sum of the log's \"took partition … "
            "in …s\"", rec.get("took_sum_s"), "s",
            note=f"{rec.get('took_lines', 0)} lines, longest {rec.get('took_max_s')} s")
    r1, r2 = parts.get("r1"), parts.get("r2")
    for r in (r1, r2):
        if r:
            add("cluster", f"writes_r{r['replicas']}", f"3 workers, R={r['replicas']}: "
                f"applied + flushed writes/s, flat out {r['duration_s']:.0f} s in "
                f"{len(r['slices'])} alternating slices",
                r.get("flushed_per_s"), "writes/s", compare_to_redis=True)
    if r1 and r2 and r1.get("flushed_per_s") and r2.get("flushed_per_s"):
        add("cluster", "r2_vs_r1", "R=2 / R=1 applied + flushed writes/s",
            round(r2["flushed_per_s"] / r1["flushed_per_s"], 2), "ratio")
    md, js = write_side_report(ctx, "cluster", cluster_markdown(ctx, parts))
    say(f"cluster: wrote {md} and {js}")
    ctx.results.notes.append(f"cluster scenario: details in {md}.")


def _cpu_line(row: dict[str, Any] | None) -> str:
    if not row:
        return "n/a"
    return ", ".join(f"{n} {row[n]:.2f}" for n in ("bench", "worker", "idle cluster",
                                                     "rabbitmq", "redis", "others", "machine")
                     if n in row)


def cluster_markdown(ctx: Context, parts: dict[str, Any]) -> str:
    m = ctx.results.meta
    lines = [
        "# Cluster: failover, recovery, replication cost",
        "",
        f"- Date: {m.get('date', '?')}; command: `{m.get('command', '?')}`",
        f"- Machine: {m.get('machine', {}).get('nproc', '?')} cores (shared: see `others`); "
        f"RabbitMQ {m.get('versions', {}).get('rabbitmq', '?')}, "
        f"Redis {m.get('versions', {}).get('redis', '?')}; 16 partitions; workers are "
        "`python -m liftline worker -v` with every non-default setting as `LIFTLINE_*`.",
        "",
    ]
    runs = parts.get("failover")
    if runs:
        lines += [
            f"## Failover (3 workers, R=2, heartbeat_s={FAST['heartbeat_s']}, "
            f"member_ttl_s={FAST['member_ttl_s']}, {FAILOVER_LOAD_PER_S:,} writes/s steady)",
            "",
            "SIGKILL of partition 0's primary; seconds from the kill to: the new primary's "
            "claim (partition 0's epoch in Redis bumped), its first flush (Redis' flushed "
            "offset past the one at the kill, under the new epoch), and its member report "
            "(`live_members`) showing it primary with an applied offset past the victim's "
            "last reported one. Reports are written once per heartbeat, before that "
            "heartbeat's rebalance, so the last column trails the promotion by up to one "
            "heartbeat.",
            "",
            "| # | victim → new primary | was its standby | claim s | first flush s | "
            "report shows applied s |",
            "|---:|---|---|---:|---:|---:|",
        ]
        for r in runs:
            lines.append(f"| {r['rep']} | {r['victim']} → {r['new_primary']} | "
                         f"{'yes' if r['new_primary_was_standby'] else 'no'} | "
                         f"{_cell(r['claim_s'])} | {_cell(r['first_flush_s'])} | "
                         f"{_cell(r['applied_reported_s'])} |")
        med = {k: [r[k] for r in runs if r[k] is not None]
               for k in ("claim_s", "first_flush_s", "applied_reported_s")}
        lines.append("| median | | | " + " | ".join(
            _cell(statistics.median(v)) if v else "n/a" for v in med.values()) + " |")
        lines.append("")
    rec = parts.get("recovery")
    if rec:
        verdict = "n/a" if rec.get("recovery_s") is None else (
            "PASS" if rec["recovery_s"] <= RECOVERY_TARGET_S else "**FAIL**")
        lines += [
            f"## Recovery of {rec['keys']:,} keys (one worker, heartbeat_s="
            f"{rec['heartbeat_s']})",
            "",
            f"One worker took in {rec['keys']:,} distinct keys ({rec.get('load_s')} s, "
            f"{rec.get('keys_in_redis', 0):,} keys in Redis) and stopped on SIGTERM (exit "
            f"{rec.get('first_exit')}, {rec.get('first_stop_s')} s); then "
            f"{rec['tail_writes']:,} writes arrived with no worker running "
            f"({rec.get('entries_past_flush', 0):,} stream entries past the flush). A fresh "
            "worker then started; seconds from just before its process started:",
            "",
            "| registered | every partition taken (report) | Redis watermarks cover every "
            "write | report: applied == flushed ≥ tail everywhere | recovery (target ≤ "
            f"{RECOVERY_TARGET_S:.0f} s) |",
            "|---:|---:|---:|---:|---:|",
            f"| {_cell(rec.get('registered_s'))} | {_cell(rec.get('all_taken_s'))} | "
            f"{_cell(rec.get('redis_covered_s'))} | {_cell(rec.get('report_caught_up_s'))} | "
            f"{_cell(rec.get('recovery_s'))} {verdict} |",
            "",
            f"The worker's log: {rec.get('took_lines', 0)} \"took partition … in …s\" lines, "
            f"{rec.get('took_keys', 0):,} keys; load times sum {rec.get('took_sum_s')} s, "
            f"median {rec.get('took_median_s')} s, longest {rec.get('took_max_s')} s; first "
            f"load began → last ended {rec.get('took_span_s')} s. Peak RSS "
            f"{rec.get('peak_rss_mib')} MiB. CPU (cores): "
            f"{_cpu_line(ctx.results.cpu.get('cluster recovery'))}.",
            "",
        ]
    r1, r2 = parts.get("r1"), parts.get("r2")
    if r1 or r2:
        lines += [
            "## Writes/s with 3 workers, R=1 vs R=2 (default settings otherwise)",
            "",
            "Both clusters run at once (3 + 3 workers; the idle one only heart-beats: its "
            "CPU is `idle cluster`); one "
            "Producer in the benchmark process writes flat out (the producer scenario's mix) "
            "to one cluster at a time, in slices that alternate R=1, R=2, R=2, R=1, … so "
            "that both share the same machine conditions. Applied + flushed = each slice's "
            "writes over the time from its first submit until Redis' watermarks cover them, "
            "summed over the slices.",
            "",
            "| R | seconds flat out | writes | produced writes/s | confirmed writes/s | "
            "applied + flushed writes/s | per slice | longest drain after a slice | "
            "CPU (cores) |",
            "|---:|---:|---:|---:|---:|---:|---|---:|---|",
        ]
        for r in (r1, r2):
            if r:
                cpu = ctx.results.cpu.get(f"cluster R={r['replicas']}")
                per = ", ".join(_cell(x["flushed_per_s"]) for x in r["slices"])
                lines.append(
                    f"| {r['replicas']} | {r['duration_s']:.0f} | {r['writes']:,} | "
                    f"{_cell(r.get('produced_per_s'))} | {_cell(r.get('confirmed_per_s'))} | "
                    f"{_cell(r.get('flushed_per_s'))} | {per} | "
                    f"{_cell(r.get('drain_s_max'))} s | {_cpu_line(cpu)} |")
        if r1 and r2 and r1.get("flushed_per_s") and r2.get("flushed_per_s"):
            lines += ["", f"R=2 / R=1: {r2['flushed_per_s'] / r1['flushed_per_s']:.2f}×"]
        lines.append("")
    failed = [k for k in ("failover", "recovery", "r1", "r2") if k not in parts]
    if failed:
        lines += [f"Did not finish: {', '.join(failed)} (see latest.md).", ""]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"
