"""RPC to partition owners from asyncio code: pika's AsyncioConnection, direct reply-to.

A transport of bytes: what the bytes mean is :mod:`liftline.reads.protocol`'s
business. One connection and channel per process, consuming
``amq.rabbitmq.reply-to``; each call publishes to an owner's RPC queue with a
correlation id and awaits its reply. Requests are published ``mandatory``: a
queue that is gone (its worker died) comes back as a return, answered at once
with GONE instead of a timeout. A lost connection fails the calls in flight
(BrokerUnavailable) and the next call connects again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection

from liftline.errors import BrokerUnavailable, Timeout
from liftline.queue.connection import Nodes, parameters
from liftline.reads.steps import GONE, Gone
from liftline.settings import Settings, mask_url

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"


class AsyncRpc:
    """Calls owners and awaits their replies; use from the loop's own thread."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self._conn: AsyncioConnection | None = None
        self._nodes = Nodes(settings)  # each connect goes to the next node of the list
        self._channel: Any = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[str, asyncio.Future[bytes | Gone]] = {}
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self):x}-"
        self._closing = False

    async def call(self, queue: str, body: bytes, timeout_s: float) -> bytes | Gone:
        """The reply to ``body`` sent to ``queue``, or GONE when there is no such queue;
        Timeout or BrokerUnavailable otherwise."""
        await self._connected(min(timeout_s, self.settings.rpc_timeout_s))
        if self._channel is None:
            raise BrokerUnavailable("the RPC channel closed while connecting")
        corr = f"{self._prefix}{next(self._ids)}"
        waiter: asyncio.Future[bytes | Gone] = self.loop.create_future()
        self._pending[corr] = waiter
        try:
            self._channel.basic_publish(
                "", queue, body,
                properties=pika.BasicProperties(reply_to=REPLY_TO, correlation_id=corr),
                mandatory=True,
            )
            done, _ = await asyncio.wait((waiter,), timeout=timeout_s)
            if not done:
                raise Timeout(f"{queue} did not answer within {timeout_s:.1f}s")
            return waiter.result()
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerUnavailable(f"read request failed: {exc!r}") from exc
        finally:
            self._pending.pop(corr, None)

    async def _connected(self, timeout_s: float) -> None:
        if self._channel is not None and self._channel.is_open:
            return
        # No channel: connect again, unless an attempt is already under way.
        if self._ready is None or self._ready.done():
            self._ready = self.loop.create_future()
            self._open()
        done, _ = await asyncio.wait((self._ready,), timeout=timeout_s)
        if not done:
            raise BrokerUnavailable(f"no RabbitMQ connection within {timeout_s:.1f}s "
                                    f"({mask_url(self.settings.amqp_url)})")
        self._ready.result()

    def _open(self) -> None:
        self._conn = AsyncioConnection(
            parameters(self._nodes.next(), name=f"liftline-ingest-rpc-{os.getpid()}"),
            on_open_callback=lambda conn: conn.channel(on_open_callback=self._on_channel),
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self.loop,
        )

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True,
                              callback=lambda _frame: self._set_ready(None))

    def _set_ready(self, error: Exception | None) -> None:
        ready = self._ready
        if ready is None or ready.done():
            return
        if error is None:
            ready.set_result(None)
        else:
            ready.set_exception(error)
            ready.exception()  # retrieved here; callers re-raise it through result()

    def _on_reply(self, _channel: Any, _method: Any, props: Any, body: bytes) -> None:
        waiter = self._pending.get(props.correlation_id or "")
        if waiter is None or waiter.done():
            return
        waiter.set_result(bytes(body))

    def _on_return(self, _channel: Any, _method: Any, props: Any, _body: bytes) -> None:
        waiter = self._pending.get(props.correlation_id or "")
        if waiter is not None and not waiter.done():
            waiter.set_result(GONE)

    def _on_open_error(self, conn: Any, error: BaseException) -> None:
        if conn is not self._conn:
            return  # an earlier connection; a newer one is under way
        self._conn = None
        self._set_ready(BrokerUnavailable(f"RabbitMQ unreachable: {error}"))

    def _on_channel_closed(self, channel: Any, reason: Any) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        self._fail_pending(reason)
        if self._conn is not None and self._conn.is_open:
            self._conn.close()

    def _on_closed(self, conn: Any, reason: Any) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self._channel = None
        if not self._closing:
            log.warning("ingest RPC connection lost: %s", reason)
        self._set_ready(BrokerUnavailable(f"connection closed: {reason}"))
        self._fail_pending(reason)

    def _fail_pending(self, reason: Any) -> None:
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(BrokerUnavailable(f"connection lost: {reason}"))
        self._pending.clear()

    async def close(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None and conn.is_open:
            conn.close()
            for _ in range(100):
                if self._conn is None:
                    break
                await asyncio.sleep(0.01)
