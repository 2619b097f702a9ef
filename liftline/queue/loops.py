"""Where a ConfirmingPublisher runs: its own thread, or an asyncio loop.

The publisher's confirm / return / reconnect logic is the same either way; a
driver supplies the connection class, timers and the way other threads hand
work to it. :class:`ThreadLoop` runs pika's SelectConnection on a thread of its
own (the Python ``Producer``); :class:`AsyncioLoop` runs pika's
AsyncioConnection on an already running asyncio loop (the HTTP ingest service),
so request handlers and confirms share one thread and need no locks or hops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.adapters.select_connection import IOLoop

Callback = Callable[[], None]


class LoopDriver:
    """What the publisher needs from the loop it runs on."""

    #: True when nothing polls the producer: the publisher must arm a timer per batch.
    event_driven = False

    def connect(self, params: pika.URLParameters, *, on_open: Callable[..., None],
                on_open_error: Callable[..., None],
                on_close: Callable[..., None]) -> Any:
        raise NotImplementedError

    def call_later(self, delay_s: float, fn: Callback) -> Any:
        raise NotImplementedError

    def call_threadsafe(self, fn: Callback) -> None:
        """Run ``fn`` on the loop soon; callable from any thread."""
        raise NotImplementedError

    def run(self, first: Callback) -> None:
        """Start the loop (if it is ours) and run ``first`` on it."""
        raise NotImplementedError

    def halt(self) -> None:
        """Called on the loop once the publisher is finished."""
        raise NotImplementedError

    def join(self, timeout_s: float) -> None:
        """Wait (from another thread) until :meth:`halt` ran."""

    def now(self) -> float:
        """The clock (seconds) the publisher measures confirm timeouts on.

        ``Batch.created`` is stamped with time.monotonic, so a real driver keeps
        that clock; a test driver with a manual clock must stamp batches with it.
        """
        return time.monotonic()


class ThreadLoop(LoopDriver):
    """pika's SelectConnection IOLoop on a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.ioloop = IOLoop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._first: Callback | None = None

    def connect(self, params: pika.URLParameters, *, on_open: Callable[..., None],
                on_open_error: Callable[..., None],
                on_close: Callable[..., None]) -> pika.SelectConnection:
        return pika.SelectConnection(params, on_open_callback=on_open,
                                     on_open_error_callback=on_open_error,
                                     on_close_callback=on_close, custom_ioloop=self.ioloop)

    def call_later(self, delay_s: float, fn: Callback) -> Any:
        return self.ioloop.call_later(delay_s, fn)

    def call_threadsafe(self, fn: Callback) -> None:
        self.ioloop.add_callback_threadsafe(fn)

    def run(self, first: Callback) -> None:
        self._first = first
        self._thread.start()

    def _main(self) -> None:
        assert self._first is not None
        self._first()
        self.ioloop.start()
        self.ioloop.close()

    def halt(self) -> None:
        self.ioloop.stop()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


class CoalescingAsyncioConnection(AsyncioConnection):  # type: ignore[misc]
    """pika's AsyncioConnection, sending what one loop turn produced in one write.

    pika hands every frame to its transport separately (three per message) and
    the transport sends each with its own ``send`` (a tenth of the ingest
    process's profile samples under load). Frames emitted during one turn of the
    loop are joined and handed over once, at the end of the turn, in order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._out: list[bytes] = []
        super().__init__(*args, **kwargs)

    def _adapter_emit_data(self, data: bytes) -> None:
        if not self._out:
            self._nbio.get_native_ioloop().call_soon(self._flush_out)
        self._out.append(data)

    def _flush_out(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self._transport is not None:  # else the connection is gone, and the frames with it
            super()._adapter_emit_data(data)


class AsyncioLoop(LoopDriver):
    """pika's AsyncioConnection on a running asyncio loop (one the caller owns)."""

    event_driven = True

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.halted = threading.Event()
        self._thread_id: int | None = None

    def connect(self, params: pika.URLParameters, *, on_open: Callable[..., None],
                on_open_error: Callable[..., None],
                on_close: Callable[..., None]) -> AsyncioConnection:
        return CoalescingAsyncioConnection(params, on_open_callback=on_open,
                                 on_open_error_callback=on_open_error,
                                 on_close_callback=on_close, custom_ioloop=self.loop)

    def call_later(self, delay_s: float, fn: Callback) -> Any:
        return self.loop.call_later(delay_s, fn)

    def call_threadsafe(self, fn: Callback) -> None:
        if self.loop.is_closed():
            raise RuntimeError("event loop is closed")
        if threading.get_ident() == self._thread_id:
            self.loop.call_soon(fn)  # already on the loop: no self-pipe write needed
        else:
            self.loop.call_soon_threadsafe(fn)

    def run(self, first: Callback) -> None:
        def begin() -> None:
            self._thread_id = threading.get_ident()
            first()

        self.loop.call_soon_threadsafe(begin)

    def halt(self) -> None:
        self.halted.set()

    def join(self, timeout_s: float) -> None:
        if threading.get_ident() != self._thread_id:
            self.halted.wait(timeout_s)

    async def wait_halted(self, timeout_s: float) -> bool:
        """Await (on the loop) the end of the publisher; False on timeout."""
        deadline = self.loop.time() + timeout_s
        while not self.halted.is_set() and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.halted.is_set()
