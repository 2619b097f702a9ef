"""Handler threads for ``--pool threads`` that keep their number when a handler
overruns its timeout.

A Python thread cannot be stopped from outside. With a plain
``ThreadPoolExecutor`` a handler stuck past its timeout (a hung socket, a lock
that never comes) keeps its slot: the jobs prefetched behind it wait, and a
worker whose every thread is stuck runs nothing while holding its prefetch.
Here :meth:`HandlerThreads.abandon` gives the stuck thread up: a new thread
takes its place at once, and the stuck one exits when its handler returns at
last (its outcome is dropped: the job was already failed for its timeout).
Stuck threads are replaced up to ``max_abandoned`` at once (a handler that hangs
on every call must not grow the process without bound); past that the pool
shrinks, and says so, until stuck handlers return.
Threads are daemons, so a handler that never returns does not hold the worker
process at exit (its job, unacked, comes back from RabbitMQ).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_Item = tuple[cf.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class HandlerThreads:
    """``size`` threads running submitted calls; the subset of ``Executor`` the job
    runner uses (``submit``, ``shutdown``) plus :meth:`abandon`."""

    def __init__(self, size: int, name: str = "liftline-job",
                 max_abandoned: int | None = None) -> None:
        if size < 1:
            raise ValueError("a handler pool needs at least one thread")
        self.max_abandoned = max(32, 4 * size) if max_abandoned is None else max_abandoned
        self._name = name
        self._size = size
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: dict[cf.Future[Any], threading.Thread] = {}
        self._serving: set[threading.Thread] = set()
        self._abandoned: set[threading.Thread] = set()
        self._spawned = 0
        self._closed = False
        with self._lock:
            for _ in range(size):
                self._spawn()

    @property
    def size(self) -> int:
        """Threads taking new calls (abandoned ones not counted)."""
        with self._lock:
            return len(self._serving)

    @property
    def abandoned(self) -> int:
        """Abandoned threads whose handler has not returned yet."""
        with self._lock:
            return len(self._abandoned)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("the handler pool is shut down")
        future: cf.Future[Any] = cf.Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def abandon(self, future: cf.Future[Any]) -> None:
        """Stop waiting for ``future``: cancelled if it has not started; else the
        thread running it is left to finish alone and a new one replaces it."""
        with self._lock:
            thread = self._busy.pop(future, None)
            if thread is None:
                future.cancel()
                return
            self._serving.discard(thread)
            self._abandoned.add(thread)
            stuck, left = len(self._abandoned), len(self._serving)
            replaced = not self._closed and stuck <= self.max_abandoned
            if replaced:
                self._spawn()
        if replaced:
            log.warning("a job handler overran its timeout; its thread %s is abandoned and "
                        "replaced (%d abandoned thread(s) still running)", thread.name, stuck)
        else:
            log.error("a job handler overran its timeout; its thread %s is abandoned, and "
                      "not replaced: %d abandoned threads still run (limit %d); %d thread(s) "
                      "left for jobs", thread.name, stuck, self.max_abandoned, left)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        """No new calls; cancel the queued ones (``cancel_futures``); end the threads
        once their current call returns (``wait``: wait for the serving ones)."""
        with self._lock:
            self._closed = True
            serving = list(self._serving)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in serving:
            self._queue.put(None)
        if wait:
            for thread in serving:
                thread.join()

    # -- in the threads ---------------------------------------------------------
    def _spawn(self) -> None:  # with the lock held
        self._spawned += 1
        thread = threading.Thread(target=self._serve, name=f"{self._name}-{self._spawned}",
                                  daemon=True)
        self._serving.add(thread)
        thread.start()

    def _serve(self) -> None:
        me = threading.current_thread()
        while True:
            item = self._queue.get()
            if item is None:
                with self._lock:
                    self._serving.discard(me)
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._busy[future] = me
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # the handler's error is its job's outcome
                outcome: tuple[Any, BaseException | None] = (None, exc)
            else:
                outcome = (result, None)
            with self._lock:
                self._busy.pop(future, None)
                given_up = me in self._abandoned
                self._abandoned.discard(me)
                if given_up and not self._closed and len(self._serving) < self._size:
                    self._spawn()  # the pool had shrunk past max_abandoned: grow back
            if outcome[1] is None:
                future.set_result(outcome[0])
            else:
                future.set_exception(outcome[1])
            if given_up:
                log.info("abandoned job handler thread %s returned at last; it ends", me.name)
                return
