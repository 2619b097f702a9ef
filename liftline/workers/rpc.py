"""Reads served by a partition's owner over RabbitMQ RPC (direct reply-to).

The requests and replies are those of :mod:`liftline.reads.protocol`. A read
``after`` a ticket, or a ticket status asked with a wait, is parked until that
write is applied here or its time (at most ``MAX_WAIT_MS``) is up; the worker's
loop calls :meth:`ReadServer.serve_parked` every turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from liftline.errors import InvalidMessage, InvalidWrite
from liftline.partitioning import partition_for
from liftline.reads import protocol
from liftline.reads.protocol import (
    MAX_REPLY_BYTES,
    MAX_WAIT_MS,
    Entry,
    ErrorReply,
    GetManyRequest,
    GetRequest,
    Reply,
    StatusReply,
    StatusRequest,
    ValueReply,
    ValuesReply,
)
from liftline.store.memory import PartitionStore

log = logging.getLogger(__name__)

StoreOf = Callable[[int], PartitionStore | None]
Waiting = GetRequest | StatusRequest


class ReadServer:
    """Answers read requests from the stores of the partitions held here.

    ``store_of(partition)`` is the store of a partition this worker holds
    (primary or standby), or None.
    """

    def __init__(self, partitions: int, store_of: StoreOf) -> None:
        self.partitions = partitions
        self.store_of = store_of
        self._channel: Any = None
        self._parked: list[tuple[float, str, str, Waiting]] = []

    def attach(self, channel: Any, queue: str) -> None:
        self._channel = channel
        channel.queue_declare(queue, exclusive=True, auto_delete=True)
        channel.basic_consume(queue, self._on_request, auto_ack=True)

    def detach(self) -> None:
        self._channel = None
        self._parked.clear()

    def _on_request(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        if not props.reply_to:
            return
        try:
            request = protocol.decode_request(body)
        except InvalidMessage as exc:  # a bad request gets an error reply, never a crash
            self._reply(props.reply_to, props.correlation_id, ErrorReply("bad_request", str(exc)))
            return
        if isinstance(request, GetManyRequest):
            self._reply(props.reply_to, props.correlation_id, self.many(request))
            return
        # A request without a wait is answered at once, applied or not.
        wait_ms = min(request.timeout_ms, MAX_WAIT_MS)
        reply = self.answer(request, final=wait_ms <= 0)
        if reply is None:
            deadline = time.monotonic() + wait_ms / 1000.0
            self._parked.append((deadline, props.reply_to, props.correlation_id, request))
        else:
            self._reply(props.reply_to, props.correlation_id, reply)

    def serve_parked(self, now: float) -> None:
        if not self._parked:
            return
        still = []
        for deadline, reply_to, corr, request in self._parked:
            reply = self.answer(request, final=now >= deadline)
            if reply is None:
                still.append((deadline, reply_to, corr, request))
            else:
                self._reply(reply_to, corr, reply)
        self._parked = still

    def answer(self, request: Waiting, *, final: bool) -> Reply | None:
        """The reply to ``request`` now; None means "park it": its write is not applied
        yet and ``final`` is false."""
        if isinstance(request, StatusRequest):
            return self._status(request, final)
        partition = partition_for(request.key, self.partitions)
        store = self.store_of(partition)
        if store is None:
            return _not_held(partition)
        after = request.after
        if after is not None:
            awaited = self.store_of(after.partition)
            if awaited is None:
                return _not_held(after.partition)
            if not awaited.applied(after.producer_id, after.seq):
                if not final:
                    return None
                return ErrorReply("timeout", "the write was not applied within the timeout",
                                  after.partition, awaited.applied_offset,
                                  awaited.watermarks.get(after.producer_id, 0))
        entry = store.get(request.key)
        if entry is None:
            return ValueReply(False, None, 0, partition, store.applied_offset)
        return ValueReply(True, entry[0], entry[1], partition, store.applied_offset)

    def _status(self, request: StatusRequest, final: bool) -> Reply | None:
        ticket = request.ticket
        store = self.store_of(ticket.partition)
        if store is None:
            return _not_held(ticket.partition)
        applied = store.applied(ticket.producer_id, ticket.seq)
        if not applied and not final:
            return None
        return StatusReply(applied, ticket.partition, store.watermarks.get(ticket.producer_id, 0),
                           store.applied_offset, store.expired(ticket.producer_id))

    def many(self, request: GetManyRequest) -> ValuesReply:
        """Each key's entry, or None for a key whose partition is not held here."""
        entries: list[Entry | None] = []
        for key in request.keys:
            store = self.store_of(partition_for(key, self.partitions))
            if store is None:
                entries.append(None)
                continue
            entry = store.get(key)
            entries.append(Entry(False, None, 0) if entry is None
                           else Entry(True, entry[0], entry[1]))
        return ValuesReply(tuple(entries))

    def _reply(self, reply_to: str, corr: str, reply: Reply) -> None:
        if self._channel is None:
            return
        try:
            body = protocol.encode_reply(reply)
        except InvalidWrite as exc:  # a value msgpack cannot carry: say so, do not crash
            body = protocol.encode_reply(ErrorReply("bad_request", str(exc)))
        if len(body) > MAX_REPLY_BYTES:
            body = protocol.encode_reply(ErrorReply(
                "bad_request", f"the reply would be {len(body)} bytes, over the "
                               f"{MAX_REPLY_BYTES}-byte limit; ask for fewer keys at once"))
        try:
            self._channel.basic_publish(
                "", reply_to, body, properties=pika.BasicProperties(correlation_id=corr),
            )
        except (pika.exceptions.AMQPError, OSError) as exc:
            log.warning("read reply failed: %r", exc)


def _not_held(partition: int) -> ErrorReply:
    return ErrorReply("not_owner", f"partition {partition} is not held here", partition)
