"""Reads from the partition's owner over RabbitMQ RPC with direct reply-to (blocking)."""

from __future__ import annotations

import time
import uuid
from typing import Any, TypeVar

import pika
import pika.exceptions

from liftline.errors import BrokerError, Timeout
from liftline.queue.connection import Nodes, connect_blocking
from liftline.reads.base import Reader, ReadResult, TicketStatus
from liftline.reads.core import ReadCore
from liftline.reads.protocol import StatusReply
from liftline.reads.steps import GONE, Gone, OwnerCall, RedisCall, Step, Steps, run, run_redis
from liftline.settings import Settings
from liftline.store.redis_store import connect
from liftline.tickets import Ticket

T = TypeVar("T")
_REPLY_TO = "amq.rabbitmq.reply-to"


class OwnerReader(Reader):
    """Asks the live owner of the key's partition; its memory is the freshest state.

    ``source`` is ``"owner:<member id>"``. With ``after``, the owner of the
    ticket's partition applied that write before the key was read (whichever
    partition the key is in); NotApplied (a Timeout) says it was not in time.
    Not thread-safe: one reader per thread (it holds a pika connection).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.core = ReadCore(settings)
        self._redis = connect(settings.redis_url, timeout_s=settings.query_timeout_s)
        self._nodes = Nodes(settings)
        self._waiting = ""  # the correlation id of the one call in flight
        self._outcome: bytes | Gone | None = None
        self._connect()

    def _connect(self) -> None:
        self._conn = connect_blocking(self.settings, name="liftline-reader", attempts=2,
                                      timeout_s=self.settings.query_timeout_s, nodes=self._nodes)
        self._channel = self._conn.channel()
        self._channel.add_on_return_callback(self._on_return)
        self._channel.basic_consume(_REPLY_TO, self._on_reply, auto_ack=True)

    def get(self, key: str, *, after: Ticket | None = None,
            timeout_ms: int = 2000) -> ReadResult:
        return self._run(self.core.get(key, after, timeout_ms))

    def get_many(self, keys: list[str]) -> dict[str, ReadResult]:
        """Values of many keys from their owners, one request per owner."""
        return self._run(self.core.get_many(keys))

    def wait_applied(self, ticket: Ticket, timeout_ms: int = 2000) -> StatusReply:
        """Return once the ticket's owner applied it; NotApplied after ``timeout_ms``."""
        return self._run(self.core.wait_applied(ticket, timeout_ms))

    def status(self, ticket: Ticket) -> TicketStatus:
        """Whether the ticket's write is queued, applied, persisted or expired (too old to tell)."""
        return self._run(self.core.status(ticket))

    def _run(self, steps: Steps[T]) -> T:
        return run(steps, self._execute)

    def _execute(self, step: Step) -> Any:
        if isinstance(step, RedisCall):
            return run_redis(self._redis, step)
        return self._call(step)

    def _on_reply(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        if props.correlation_id == self._waiting:  # a late reply to a timed-out call is dropped
            self._outcome = body

    def _on_return(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        if props.correlation_id == self._waiting:
            self._outcome = GONE

    def _call(self, step: OwnerCall) -> bytes | Gone:
        """One request to an owner. A read changes nothing, so a connection lost on
        the way (its RabbitMQ node died) costs one more try through the next node."""
        try:
            return self._call_once(step)
        except BrokerError:
            if self._conn.is_open:
                raise
        self._connect()
        return self._call_once(step)

    def _call_once(self, step: OwnerCall) -> bytes | Gone:
        if not self._conn.is_open:
            raise BrokerError("the connection to RabbitMQ is closed")
        self._waiting, self._outcome = uuid.uuid4().hex, None
        try:
            self._channel.basic_publish(
                "", step.queue, step.body, mandatory=True,
                properties=pika.BasicProperties(reply_to=_REPLY_TO,
                                                correlation_id=self._waiting),
            )
            deadline = time.monotonic() + step.timeout_s
            while self._outcome is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"{step.queue} did not answer within {step.timeout_s:.1f}s")
                self._conn.process_data_events(time_limit=min(left, 0.05))
            return self._outcome
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerError(f"read failed: {exc!r}") from exc
        finally:
            self._waiting = ""

    def close(self) -> None:
        try:
            if self._conn.is_open:
                self._conn.close()
        finally:
            self._redis.close()
