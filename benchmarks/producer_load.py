"""One producing thread's load: submit ops as fast as possible, then await every confirm.

Shared by the threaded producer runs (``producer_bench``) and each child process of
the multi-process run (``producer_child``), so both measure the same loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.progress import Deadline, Ticker, fmt_rate, rate, say
from benchmarks.workload import Op
from liftline.producer import Producer, WriteFuture
from liftline.producer.futures import WriteFutures

CHUNK = 10_000       # ops between two looks at the clock
MANY_CHUNK = 1_000   # writes per submit_many call


@dataclass
class Load:
    """What one thread submitted and what came of it."""

    submitted: int = 0
    confirmed: int = 0
    failed: int = 0
    first_error: str = ""
    complete: bool = True
    began: float = 0.0        # time.monotonic(): comparable between processes on Linux
    submit_end: float = 0.0
    confirm_end: float = 0.0
    futures: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "futures"}


def run_load(producer: Producer, ops: list[Op], *, many: bool, submit_limit_s: float,
             confirm_limit_s: float, progress: bool = False, scale: int = 1) -> Load:
    """Submit ``ops`` (one ``submit`` each, or ``submit_many`` in chunks of 1,000), then
    wait for every future; count the confirmed and the failed writes."""
    load = Load(began=time.monotonic())
    deadline = Deadline(submit_limit_s)
    load.complete = (_submit_many if many else _submit)(producer, ops, load.futures,
                                                        deadline, progress, scale)
    load.submit_end = time.monotonic()
    confirm_deadline = Deadline(confirm_limit_s)
    for future in load.futures:
        if not future.done():
            future.exception(confirm_deadline.left())
            if confirm_deadline.passed():
                load.complete = False
                break
    load.confirm_end = time.monotonic()
    _count(load, many)
    load.futures = []
    return load


def _submit(producer: Producer, ops: list[Op], out: list[WriteFuture], deadline: Deadline,
            progress: bool, scale: int) -> bool:
    submit = producer.submit
    append = out.append
    ticker = Ticker(2.0)
    began = time.monotonic()
    for start in range(0, len(ops), CHUNK):
        for op, key, value in ops[start:start + CHUNK]:
            append(submit(op, key, value))
        if deadline.passed():
            say(f"  submit phase hit its {deadline.seconds:.0f}s limit after {len(out):,} writes")
            return False
        if progress and ticker.due():
            done = len(out) * scale
            say(f"  ~{done:,} submitted ({fmt_rate(rate(done, time.monotonic() - began))})")
    return len(out) == len(ops)


def _submit_many(producer: Producer, ops: list[Op], out: list[WriteFutures],
                 deadline: Deadline, progress: bool, scale: int) -> bool:
    submit_many = producer.submit_many
    ticker = Ticker(2.0)
    began = time.monotonic()
    done = 0
    for start in range(0, len(ops), MANY_CHUNK):
        futures = submit_many(ops[start:start + MANY_CHUNK])
        out.append(futures)
        done += len(futures)
        if deadline.passed():
            say(f"  submit phase hit its {deadline.seconds:.0f}s limit after {done:,} writes")
            return False
        if progress and ticker.due():
            say(f"  ~{done * scale:,} submitted "
                f"({fmt_rate(rate(done * scale, time.monotonic() - began))})")
    return done == len(ops)


def _count(load: Load, many: bool) -> None:
    for future in load.futures:
        n = len(future) if many else 1
        load.submitted += n
        if not future.done():
            load.failed += n
            load.first_error = load.first_error or "not confirmed in time"
            continue
        error = future.exception(0)
        if error is None:
            load.confirmed += n
            continue
        bad = len(future.failed()) if many else 1
        load.failed += bad
        load.confirmed += n - bad
        load.first_error = load.first_error or repr(error)
