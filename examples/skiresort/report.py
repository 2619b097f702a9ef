"""A load run's figures: the summary, a CSV of every request, a PNG of throughput over time.

The PNG is drawn here (zlib and struct from the standard library): a bar per
time bin, rides answered 201 per second, phase 1 in blue and phase 2 in orange
stacked, with the peak rate and the run's length written on the axes in a
small pixel font. No plotting library is needed.
"""

from __future__ import annotations

import csv
import math
import statistics
import struct
import zlib
from pathlib import Path
from typing import Any

from examples.skiresort.load import Ride, Run


def summary(run: Run) -> dict[str, Any]:
    """Successes, failures, wall time, throughput and latency (ms, each ride end to end)."""
    ok = [o for o in run.outcomes if o.status == 201]
    latencies = sorted(o.latency_ms for o in ok)
    wall = run.wall_s
    return {
        "rides": len(run.outcomes) + len(run.dropped),
        "successes": len(ok),
        "failures": len(run.outcomes) - len(ok),
        "dropped_on_purpose": len(run.dropped),
        "requests": len(run.exchanges),
        "retries": len(run.exchanges) - len(run.outcomes),
        "wall_s": round(wall, 3),
        "throughput_per_s": round(len(ok) / wall, 1) if wall > 0 else 0.0,
        "latency_ms": {
            "mean": _round(statistics.fmean(latencies)) if latencies else None,
            "median": _round(statistics.median(latencies)) if latencies else None,
            "p99": _round(percentile(latencies, 99)) if latencies else None,
            "max": _round(latencies[-1]) if latencies else None,
        },
        "failed_statuses": _counts(str(o.status) for o in run.outcomes if o.status != 201),
    }


def percentile(ordered: list[float], pct: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(x: float) -> float:
    return round(x, 2)


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def write_csv(run: Run, rides: list[Ride], path: Path) -> None:
    """One row per HTTP request, in the order they were sent: start (unix s), latency
    (ms), method, path, status (or the connection error's name), attempt, phase, ride."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["start_unix_s", "latency_ms", "method", "path", "status", "attempt",
                         "phase", "ride"])
        for e in sorted(run.exchanges, key=lambda e: e.start):
            writer.writerow([f"{e.start:.6f}", f"{e.latency_ms:.3f}", "POST",
                             rides[e.ride].path, e.status, e.attempt, e.phase, e.ride])


def throughput_series(run: Run, bins: int = 120) -> tuple[float, list[tuple[int, int]]]:
    """(bin width in s, [(phase-1 201s, phase-2 201s) per bin]) over the run's wall time."""
    width = max(0.1, run.wall_s / bins)
    count = max(1, math.ceil(run.wall_s / width))
    series = [[0, 0] for _ in range(count)]
    for o in run.outcomes:
        if o.status == 201:
            at = min(count - 1, int((o.start + o.latency_ms / 1000 - run.started) / width))
            series[max(0, at)][o.phase - 1] += 1
    return width, [(a, b) for a, b in series]


# -- PNG ---------------------------------------------------------------------
W, H, LEFT, BOTTOM, TOP, RIGHT = 900, 360, 60, 30, 20, 20
BLUE, ORANGE, GREY, BLACK, WHITE = (31, 119, 180), (255, 127, 14), (200, 200, 200), (0,) * 3, \
    (255,) * 3
# 3x5 pixel digits (and a few signs), one row of bits per line.
FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "/": "001001010100100", "s": "000011110001110",
    ".": "000000000000010", " ": "000000000000000",
}


def write_png(run: Run, path: Path) -> None:
    """Throughput (201s per second) over the run, as a PNG of ``W`` x ``H`` pixels."""
    width_s, series = throughput_series(run)
    rates = [(a / width_s, b / width_s) for a, b in series]
    peak = max((a + b for a, b in rates), default=0.0) or 1.0
    pixels = [[WHITE] * W for _ in range(H)]
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    for gy in range(5):  # grid lines at 0, 25, 50, 75, 100 % of the peak
        y = TOP + plot_h - gy * plot_h // 4
        for x in range(LEFT, LEFT + plot_w):
            pixels[y][x] = GREY
    bar = plot_w / max(1, len(rates))
    for n, (a, b) in enumerate(rates):
        x0, x1 = LEFT + int(n * bar), LEFT + max(int(n * bar) + 1, int((n + 1) * bar) - 1)
        ha, hb = int(a / peak * plot_h), int(b / peak * plot_h)
        for x in range(x0, min(x1, LEFT + plot_w)):
            for y in range(ha):
                pixels[TOP + plot_h - 1 - y][x] = BLUE
            for y in range(ha, min(plot_h, ha + hb)):
                pixels[TOP + plot_h - 1 - y][x] = ORANGE
    for y in range(TOP, TOP + plot_h + 1):
        pixels[y][LEFT - 1] = BLACK
    for x in range(LEFT - 1, LEFT + plot_w):
        pixels[TOP + plot_h][x] = BLACK
    _text(pixels, f"{peak:.0f}/s", 2, TOP - 2)
    _text(pixels, "0", LEFT - 12, TOP + plot_h - 4)
    _text(pixels, "0s", LEFT - 2, TOP + plot_h + 8)
    end = f"{run.wall_s:.1f}s"
    _text(pixels, end, LEFT + plot_w - 8 * len(end), TOP + plot_h + 8)
    path.write_bytes(_png(pixels))


def _text(pixels: list[list[tuple[int, ...]]], text: str, x: int, y: int, scale: int = 2
          ) -> None:
    for ch in text:
        bits = FONT.get(ch, FONT[" "])
        for row in range(5):
            for col in range(3):
                if bits[row * 3 + col] == "1":
                    for dy in range(scale):
                        for dx in range(scale):
                            py, px = y + row * scale + dy, x + col * scale + dx
                            if 0 <= py < len(pixels) and 0 <= px < len(pixels[0]):
                                pixels[py][px] = BLACK
        x += 4 * scale


def _png(pixels: list[list[tuple[int, ...]]]) -> bytes:
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
