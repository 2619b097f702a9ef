"""The context a handler gets, and the job envelope on the wire.

A job's definition (its handler and retry policy) is ``liftline.app.JobSpec``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from liftline import codec
from liftline.errors import InvalidMessage, InvalidWrite

MAX_JOB_BYTES = 256 * 1024
MAX_JOB_ID = 128


@dataclass
class JobContext:
    """What a handler gets as its first argument."""

    job_id: str
    name: str
    attempt: int
    key: str | None
    enqueued_at: float
    deadline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """One job message: what to run, with what, and which attempt this is."""

    id: str
    name: str
    args: dict[str, Any]
    key: str | None = None
    attempt: int = 1
    enqueued_at: float = field(default_factory=time.time)

    def pack(self) -> bytes:
        body = codec.pack({"v": 1, "id": self.id, "n": self.name, "a": self.args,
                           "k": self.key, "t": self.attempt, "e": self.enqueued_at})
        if len(body) > MAX_JOB_BYTES:
            raise InvalidWrite(f"job payload is {len(body)} bytes; the limit is {MAX_JOB_BYTES}")
        return body

    @classmethod
    def unpack(cls, body: bytes) -> Job:
        obj = codec.unpack(body, max_bytes=MAX_JOB_BYTES)
        if not isinstance(obj, dict) or obj.get("v") != 1:
            raise InvalidMessage("not a liftline job (expected a map with v=1)")
        job_id, name, args = obj.get("id"), obj.get("n"), obj.get("a")
        if not isinstance(job_id, str) or not 0 < len(job_id) <= MAX_JOB_ID:
            raise InvalidMessage("job id must be a string of 1-128 chars")
        if not isinstance(name, str) or not name:
            raise InvalidMessage("job name must be a non-empty string")
        if not isinstance(args, dict):
            raise InvalidMessage("job arguments must be a map")
        key, attempt = obj.get("k"), obj.get("t", 1)
        if key is not None and not isinstance(key, str):
            raise InvalidMessage("job key must be a string")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise InvalidMessage("job attempt must be an int >= 1")
        return cls(job_id, name, args, key, attempt, float(obj.get("e") or time.time()))


def new_job(name: str, args: dict[str, Any], key: str | None, job_id: str | None) -> Job:
    """A validated job (InvalidWrite for a bad id, key, or arguments that cannot be encoded)."""
    if job_id is not None and (not isinstance(job_id, str) or not 0 < len(job_id) <= MAX_JOB_ID):
        raise InvalidWrite("job_id must be a string of 1-128 characters")
    if key is not None:
        codec.check_key(key)
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InvalidWrite("job name must be a string of 1-64 characters")
    for value in args.values():
        if codec.depth(value) > codec.MAX_DEPTH:
            raise InvalidWrite(f"job arguments are nested deeper than {codec.MAX_DEPTH} levels")
    job = Job(job_id or uuid.uuid4().hex, name, dict(args), key)
    job.pack()  # size check
    return job
