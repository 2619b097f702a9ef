"""The job outcome policy: from what the runner observed of a job to what to do.

Pure, no pika, no Redis; deterministic but for the retry jitter, which
:func:`decide` takes as an argument (by default ``JobSpec.delay``'s). The
runner (:mod:`liftline.jobs.runner`) observes, asks these functions, and has
:mod:`liftline.jobs.outcome_io` carry the answer out:

- a delivery (:func:`on_delivery`): run it (:class:`Admit`), move it to the
  suspects queue (:class:`ToSuspects`), or dead-letter it unrun (:class:`Reject`);
- a job whose handler ended or overran (:func:`decide`): :class:`Succeed`,
  :class:`Retry` (in place for a keyed job, else through a delay queue) or
  :class:`Dead`;
- which delivered jobs start now (:func:`to_start`: a suspect runs alone);
- a keyed job holding its queue until its retry (:func:`held_retry`): begin it
  again, give it back (the runner is stopping), or wait;
- a letter in the dead-letter intake (:func:`dead_letter`): why it is dead.

Whether a job is a suspect decides where and how it runs (alone), never its
outcome: a suspect that fails is retried or dead like any job.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from liftline import codec
from liftline.app import JobSpec
from liftline.errors import InvalidMessage, InvalidWrite
from liftline.jobs.spec import Job, JobContext
from liftline.jobs.topology import delay_step

# Set on a job moved to the suspects queue: it is not moved again.
SUSPECT_HEADER = "x-liftline-suspect"
_MAX_TRACEBACK = 8000


# -- what to do with a job that ran ---------------------------------------------
@dataclass(frozen=True)
class Succeed:
    """Store ``result`` as the job's result, then ack. ``packed`` is its msgpack
    form, made once when the policy checked that it encodes, and stored as is."""

    result: Any
    packed: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True)
class Retry:
    """Record the failed attempt, then run ``attempt`` (the next one) after ``delay``
    seconds: in place, holding the key's queue (``in_place``), or through the delay
    queue of :attr:`step_ms`; then ack (a job held in place is acked when it ends)."""

    attempt: int
    delay: float
    in_place: bool
    error: str
    traceback: str = ""
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def step_ms(self) -> int:
        """The delay queue (ms) a retry through the queues waits in (see
        :func:`liftline.jobs.topology.delay_step`)."""
        return delay_step(self.delay)

    def after(self, seconds: float) -> Retry:
        """This retry after ``seconds`` instead."""
        return dataclasses.replace(self, delay=seconds)

    def give_up(self, reason: str | None = None) -> Dead:
        """Dead now instead of retried (``reason`` defaults to the usual text)."""
        failed = self.attempt - 1
        return Dead(reason or _dead_text(failed, self.error), failed, self.traceback,
                    self.error, self.cause)


@dataclass(frozen=True)
class Dead:
    """Publish the job to the dead letters with ``reason`` (confirmed), then ack.

    ``error`` is the failure of the attempt that just ran, recorded first; None
    when the job never ran (it could not be decoded, or has no handler)."""

    reason: str
    attempts: int
    traceback: str = ""
    error: str | None = None
    cause: BaseException | None = field(default=None, compare=False, repr=False)


Outcome = Succeed | Retry | Dead


@dataclass(frozen=True)
class Finished:
    """What the runner saw of one job whose handler returned, raised or overran
    (``timed_out``). ``keyed``: it came from a key queue."""

    job: Job
    spec: JobSpec
    keyed: bool
    suspect: bool = False
    result: Any = None
    error: BaseException | None = None
    timed_out: bool = False


def decide(seen: Finished, delay: Callable[[int], float] | None = None) -> Outcome:
    """The outcome of a job that ran.

    A result that cannot be encoded, or no result within the spec's timeout,
    fails the attempt like an exception. A failed attempt ``n`` is retried as
    attempt ``n + 1`` while ``n <= spec.retries``, after ``delay(n)`` seconds
    (default ``spec.delay``, with jitter); else the job is dead.
    """
    error = seen.error
    if seen.timed_out:
        error = TimeoutError(f"no result within {seen.spec.timeout}s")
    elif error is None:
        try:
            packed = codec.pack(seen.result)
        except InvalidWrite as exc:
            error = exc
        else:
            return Succeed(seen.result, packed)
    text = f"{type(error).__name__}: {error}"
    tb = "".join(traceback.format_exception(error))[-_MAX_TRACEBACK:]
    attempt = seen.job.attempt
    if attempt > seen.spec.retries:
        return Dead(_dead_text(attempt, text), attempt, tb, text, error)
    seconds = (delay or seen.spec.delay)(attempt)
    return Retry(attempt + 1, seconds, seen.keyed, text, tb, error)


def _dead_text(attempts: int, error: str) -> str:
    return f"failed after {attempts} attempt(s): {error}"


def adjusted(policy: Retry | Dead, proposed: object, attempt: int) -> Retry | Dead | None:
    """What a hook's answer ``proposed`` to the policy's ``policy`` outcome of failed
    ``attempt`` amounts to: a hook may give up (any :class:`Dead`: its reason and
    traceback are taken) or change a retry's delay (a :class:`Retry` when the
    policy retries: its delay, finite and >= 0, is taken). None: not allowed."""
    if isinstance(proposed, Dead):
        return Dead(proposed.reason, attempt, proposed.traceback or policy.traceback,
                    policy.error, policy.cause)
    if isinstance(proposed, Retry) and isinstance(policy, Retry) \
            and math.isfinite(proposed.delay) and proposed.delay >= 0:
        return dataclasses.replace(policy, delay=proposed.delay)
    return None


# -- what to do with a delivery ---------------------------------------------------
@dataclass(frozen=True)
class Admit:
    """Run it (a suspect runs alone)."""

    job: Job
    spec: JobSpec
    suspect: bool


@dataclass(frozen=True)
class ToSuspects:
    """Publish it to the suspects queue marked with :data:`SUSPECT_HEADER`, then ack."""

    job: Job


@dataclass(frozen=True)
class Reject:
    """Dead-letter the delivered body unrun, then ack."""

    job_id: str
    name: str
    dead: Dead


def on_delivery(body: bytes, message_id: str | None, headers: Mapping[str, Any] | None,
                keyed: bool, jobs: Mapping[str, JobSpec]) -> Admit | ToSuspects | Reject:
    """What to do with a delivered job message.

    A job that was delivered before (``x-delivery-count``) was out when a worker
    died, maybe because of it. Off a key queue it moves to the suspects queue
    once, so that neither it nor the jobs that came back with it can take each
    other down again; on a key queue (one at a time already) it runs where it is.
    """
    try:
        job = Job.unpack(body)
    except InvalidMessage as exc:
        return Reject(message_id or "?", "?", Dead(f"malformed job: {exc}", 0))
    spec = jobs.get(job.name)
    try:
        if spec is None:
            raise InvalidWrite(f"unknown job {job.name!r}")
        spec.check_args(job.args)
    except InvalidWrite as exc:
        return Reject(job.id, job.name, Dead(str(exc), job.attempt))
    headers = headers or {}
    marked = SUSPECT_HEADER in headers
    suspect = int(headers.get("x-delivery-count", 0)) > 0 or marked
    if suspect and not keyed and not marked:
        return ToSuspects(job)
    return Admit(job, spec, suspect)


def to_start(waiting: Sequence[bool], running: Sequence[bool]) -> int:
    """How many of the delivered jobs ``waiting`` to start (whether each is a suspect,
    in delivery order) start now, next to the ``running`` ones: a suspect runs
    alone, so it waits for the running jobs, and the jobs after it wait for it."""
    if any(running):
        return 0
    for i, suspect in enumerate(waiting):
        if suspect:
            return i if running or i > 0 else 1
    return len(waiting)


def held_retry(now: float, retry_at: float,
               stopping: bool) -> Literal["begin", "give_back", "wait"]:
    """A keyed job holds its queue until its retry: begin it at ``retry_at``; when
    the runner is stopping, give it back (it runs again, in order, elsewhere)."""
    if stopping:
        return "give_back"
    return "begin" if now >= retry_at else "wait"


# -- dead letters -----------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetter:
    """A letter from the dead-letter intake, to record (when ``job_id`` is known,
    i.e. not "?") and park in the dead queue with ``headers``."""

    job_id: str
    name: str
    dead: Dead
    headers: dict[str, Any]
    job: Job | None = None

    def context(self) -> JobContext:
        """The job as a hook sees it (name "?" and attempt 0 when undecodable)."""
        job = self.job
        if job is None:
            return JobContext(self.job_id, self.name, self.dead.attempts, None, 0.0)
        return JobContext(job.id, job.name, self.dead.attempts, job.key, job.enqueued_at)


def dead_letter(body: bytes, message_id: str | None, headers: Mapping[str, Any] | None,
                delivery_limit: int, now_ms: int) -> DeadLetter:
    """Why a letter is dead: the reason a worker gave it, else RabbitMQ's (a crash
    loop past the delivery limit, mostly)."""
    parked = dict(headers or {})
    job: Job | None = None
    job_id, name, attempts = message_id or "?", "?", 0
    try:
        job = Job.unpack(body)
        job_id, name, attempts = job.id, job.name, job.attempt
    except InvalidMessage:
        pass
    error = parked.get("x-liftline-error")
    if error is None:  # dead-lettered by RabbitMQ itself
        reason = parked.get("x-first-death-reason", "unknown")
        count = parked.get("x-delivery-count", delivery_limit)
        error = (f"crashed or lost its worker {count} times (delivery limit)"
                 if reason == "delivery_limit" else f"dead-lettered by RabbitMQ: {reason}")
    if isinstance(error, bytes):
        error = error.decode(errors="replace")
    parked.update({"x-liftline-error": error, "x-liftline-job": name,
                   "x-liftline-attempts": parked.get("x-liftline-attempts", attempts),
                   "x-liftline-dead-at-ms": now_ms})
    try:
        attempts = int(parked["x-liftline-attempts"])
    except (TypeError, ValueError):
        pass  # not ours: the job's own count stands
    tb = parked.get("x-liftline-traceback", "")
    return DeadLetter(job_id, name, Dead(str(error), attempts, tb if isinstance(tb, str) else ""),
                      parked, job)
