"""The I/O steps of the read core, the two loops that drive an operation, and
the two ways to carry out a RedisCall (blocking and asyncio redis-py).

An operation of :class:`~liftline.reads.core.ReadCore` is a generator: it
yields one step at a time, is sent back the step's outcome, and returns its
result.

- :class:`RedisCall`: run these commands in one pipeline (no transaction);
  send back the list of replies.
- :class:`OwnerCall`: publish ``body`` to the RPC queue ``queue`` (mandatory,
  direct reply-to) and send back the reply's bytes, or :data:`GONE` when
  RabbitMQ returned the request as unroutable (the owner's queue is gone).

A transport that fails (Redis or RabbitMQ unreachable, no reply within
``timeout_s``) raises a LiftlineError; :func:`run` and :func:`arun` throw it
into the generator, which may handle it (a ticket status counts a silent owner
as "queued") or let it out to the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from liftline.cluster.owners import Command
from liftline.errors import LiftlineError
from liftline.reads import protocol
from liftline.reads.protocol import Request
from liftline.store.redis_store import store_error

T = TypeVar("T")


@dataclass(frozen=True)
class RedisCall:
    """Run ``commands`` (tuples for ``execute_command``) in one pipeline; send back the replies."""

    commands: tuple[Command, ...]


@dataclass(frozen=True)
class OwnerCall:
    """Send ``request`` to the RPC queue ``queue``; send back the reply's bytes or GONE."""

    queue: str
    request: Request
    timeout_s: float

    @property
    def body(self) -> bytes:
        return protocol.encode_request(self.request)


class Gone:
    """The outcome of an OwnerCall that RabbitMQ returned: no such queue."""

    def __repr__(self) -> str:
        return "GONE"


GONE = Gone()
Step = RedisCall | OwnerCall
Steps = Generator[Step, Any, T]


def run(steps: Steps[T], execute: Callable[[Step], Any]) -> T:
    """Drive ``steps`` with a blocking ``execute``; the operation's result."""
    outcome: Any = None
    error: LiftlineError | None = None
    while True:
        try:
            step = steps.send(outcome) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            outcome, error = execute(step), None
        except LiftlineError as exc:
            outcome, error = None, exc


async def arun(steps: Steps[T], execute: Callable[[Step], Awaitable[Any]]) -> T:
    """Drive ``steps`` with an async ``execute``; the operation's result."""
    outcome: Any = None
    error: LiftlineError | None = None
    while True:
        try:
            step = steps.send(outcome) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            outcome, error = await execute(step), None
        except LiftlineError as exc:
            outcome, error = None, exc


def run_redis(client: Any, call: RedisCall) -> list[Any]:
    """The replies to ``call``'s commands from a blocking redis-py client, in one
    pipeline; StoreError / StoreUnavailable otherwise."""
    try:
        pipe = client.pipeline(transaction=False)
        for command in call.commands:
            pipe.execute_command(*command)
        return list(pipe.execute())
    except RedisError as exc:
        raise store_error(exc) from exc


async def arun_redis(client: Any, call: RedisCall) -> list[Any]:
    """:func:`run_redis` for a ``redis.asyncio`` client."""
    try:
        pipe = client.pipeline(transaction=False)
        for command in call.commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())
    except RedisError as exc:
        raise store_error(exc) from exc


def via_redis(lookup: Generator[list[Command], list[Any], T]) -> Steps[T]:
    """A generator of Redis command lists (the cluster layer's lookups) as RedisCall steps."""
    try:
        commands = next(lookup)
        while True:
            commands = lookup.send((yield RedisCall(tuple(commands))))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
