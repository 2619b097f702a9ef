"""Collected figures, and the markdown + JSON report written at the end of a run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BASELINE_ID = "baseline.redis_pipeline"
CPU_COLUMNS = ("bench", "worker", "rabbitmq", "redis", "others", "machine")


@dataclass
class Figure:
    """One measured number, with its target (if it has one) and how it compares."""

    id: str
    scenario: str
    label: str
    value: float | None
    unit: str
    target: float | None = None
    # "min": passes when value >= target; "max": when value <= target.
    target_kind: str = "min"
    compare_to_redis: bool = False
    note: str = ""
    passed: bool | None = None
    vs_redis: float | None = None


@dataclass
class Results:
    """Everything one run measured; turned into latest.md and latest.json."""

    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, scenario: str, key: str, label: str, value: float | None, unit: str,
            **extra: Any) -> Figure:
        figure = Figure(f"{scenario}.{key}", scenario, label, value, unit, **extra)
        self.figures.append(figure)
        return figure

    def get(self, figure_id: str) -> Figure | None:
        return next((f for f in self.figures if f.id == figure_id), None)

    def finish(self) -> None:
        """Judge targets and compute ratios against the direct-Redis baseline."""
        baseline = self.get(BASELINE_ID)
        base = baseline.value if baseline is not None else None
        for f in self.figures:
            if f.target is not None:
                if f.value is None:
                    f.passed = False
                else:
                    ok = f.value >= f.target if f.target_kind == "min" else f.value <= f.target
                    # A scenario may have failed the figure already (errors, time limit).
                    f.passed = ok and f.passed is not False
            if f.compare_to_redis and base and f.value is not None:
                f.vs_redis = round(f.value / base, 2)


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "writes/s":
        return f"{value:,.0f} writes/s"
    if unit == "ms" and value < 1:
        return f"{value:.3f} ms"
    if unit in ("s", "ms"):
        return f"{value:,.2f} {unit}"
    if unit == "MiB" or unit == "MiB/M keys":
        return f"{value:,.1f} {unit}"
    if unit == "bool":
        return "yes" if value else "no"
    if unit == "ratio":
        return f"{value:.2f}×"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f} {unit}".strip()
    return f"{value:,.0f} {unit}".strip()


def _target(f: Figure) -> str:
    if f.target is None:
        return ""
    sign = "≥" if f.target_kind == "min" else "≤"
    return f"{sign} {_num(f.target, f.unit)}"


def markdown(results: Results) -> str:
    m = results.meta
    machine = m.get("machine", {})
    versions = m.get("versions", {})
    lines = [
        "# liftline benchmark results",
        "",
        f"- Date: {m.get('date', '?')}",
        f"- Command: `{m.get('command', '?')}`"
        + (" (quick mode: smaller counts, shorter runs)" if m.get("quick") else ""),
        f"- Machine: {machine.get('nproc', '?')} cores, {machine.get('cpu_model', '?')}, "
        f"{machine.get('ram_gib', '?')} GiB RAM, Linux {machine.get('kernel', '?')}",
        f"- Versions: RabbitMQ {versions.get('rabbitmq', '?')}, "
        f"Redis {versions.get('redis', '?')}, "
        f"Python {versions.get('python', '?')}, pika {versions.get('pika', '?')}, "
        f"redis-py {versions.get('redis-py', '?')} (hiredis {versions.get('hiredis', '?')}), "
        f"msgpack {versions.get('msgpack', '?')}, liftline {versions.get('liftline', '?')}",
        f"- Servers: {m.get('servers', '?')}",
        f"- Workload: {m.get('workload', '?')}",
        f"- Other processes on the machine at start: "
        f"{m.get('background_cores_at_start', '?')} cores busy (see the CPU table's "
        "`others` column: this machine may be shared)",
        f"- Status: {m.get('status', '?')}, {m.get('elapsed_s', '?')} s in all",
        "",
        "| Scenario | Figure | Value | Target | Result | vs direct Redis |",
        "|---|---|---:|---|---|---:|",
    ]
    for f in results.figures:
        result = "" if f.passed is None else ("PASS" if f.passed else "**FAIL**")
        ratio = "" if f.vs_redis is None else f"{f.vs_redis:.2f}×"
        label = f.label + (f" ({f.note})" if f.note else "")
        lines.append(f"| {f.scenario} | {label} | {_num(f.value, f.unit)} | {_target(f)} | "
                     f"{result} | {ratio} |")
    if results.errors:
        lines += ["", "## Scenarios that did not finish", ""]
        for name, error in results.errors.items():
            last = error.strip().splitlines()[-1] if error.strip() else "?"
            lines.append(f"- **{name}**: {last}")
    if results.cpu:
        seen = {k for row in results.cpu.values() for k in row if k != "wall_s"}
        names = [n for n in CPU_COLUMNS if n in seen] + sorted(seen - set(CPU_COLUMNS))
        lines += ["", "## CPU use while measuring (average cores busy; the machine has "
                  f"{machine.get('nproc', '?')})", "",
                  "`bench` is the benchmark process (the Producer, or the redis-py client), "
                  "`others` everything else on the machine, `machine` the total.", "",
                  "| Phase | wall s | " + " | ".join(names) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        for phase, row in results.cpu.items():
            cells = " | ".join(f"{row[n]:.2f}" if n in row else "" for n in names)
            lines.append(f"| {phase} | {row.get('wall_s', 0):.1f} | {cells} |")
    for name in ("e2e.paced", "e2e.unpaced", "e2e.unpaced-many"):
        samples = results.details.get(name, {}).get("samples")
        if samples:
            lines += ["", f"<details><summary>{name}: per-second samples</summary>", "",
                      "Lag is confirmed − flushed (what the worker owes); submitted − "
                      "flushed adds what the producer still buffers or awaits confirms for.",
                      "",
                      "| t s | produced/s | confirmed/s | flushed/s | lag (writes, all "
                      "partitions) | max partition lag | submitted − flushed | worker RSS MiB |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for s in samples:
                lines.append(
                    f"| {s['t']:.1f} | {s['produced_per_s']:,} | {s['confirmed_per_s']:,} | "
                    f"{s['flushed_per_s']:,} | {s['lag']:,} | {s['lag_max_partition']:,} | "
                    f"{s.get('in_flight', 0):,} | {s.get('worker_rss_mib', 0):.0f} |")
            lines += ["", "</details>"]
    if results.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results.notes]
    return "\n".join(lines) + "\n"


def write(results: Results, directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    md_path, json_path = directory / "latest.md", directory / "latest.json"
    md_path.write_text(markdown(results))
    payload = {
        "meta": results.meta,
        "figures": [asdict(f) for f in results.figures],
        "cpu_cores": results.cpu,
        "details": results.details,
        "errors": results.errors,
        "notes": results.notes,
    }
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return md_path, json_path
