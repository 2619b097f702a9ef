"""A process pool for CPU-bound job handlers, speaking msgpack over pipes.

concurrent.futures' ProcessPoolExecutor pickles what it sends; liftline never
pickles. Each child is forked from the worker (so it has the App's handlers),
receives ``{name, ctx, args}`` as msgpack bytes and answers ``{ok, result |
error, tb}``. A child whose job overran its timeout is killed and replaced.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import traceback
from dataclasses import asdict
from typing import Any

from liftline import codec
from liftline.app import App
from liftline.jobs.spec import JobContext

_MAX_MESSAGE = 64 * 1024 * 1024


class JobError(Exception):
    """A handler's exception, carried back from a child process as text."""

    def __init__(self, message: str, tb: str) -> None:
        super().__init__(message)
        self.remote_traceback = tb


def _child_main(app: App, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            request = codec.unpack(conn.recv_bytes(_MAX_MESSAGE), max_bytes=_MAX_MESSAGE)
        except EOFError:
            return
        try:
            spec = app.jobs[request["name"]]
            result = spec.fn(JobContext(**request["ctx"]), **request["args"])
            reply = codec.pack({"ok": True, "result": result})
        except BaseException as exc:  # everything goes back to the parent as text
            reply = codec.pack({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                "tb": "".join(traceback.format_exception(exc))[-8000:]})
        conn.send_bytes(reply)


class _Child:
    def __init__(self, app: App) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(app, child_conn), daemon=True)
        self.proc.start()
        child_conn.close()


class ProcessPool:
    """``size`` child processes; ``submit`` returns a concurrent.futures.Future."""

    def __init__(self, app: App, size: int) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._idle = [_Child(app) for _ in range(size)]
        self._busy: dict[cf.Future[Any], _Child] = {}
        self._waiting: list[tuple[cf.Future[Any], bytes]] = []

    def submit(self, fn: Any, ctx: JobContext, **args: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        request = codec.pack({"name": ctx.name, "ctx": asdict(ctx), "args": args})
        with self._lock:
            self._waiting.append((future, request))
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        while self._idle and self._waiting:
            future, request = self._waiting.pop(0)
            child = self._idle.pop()
            self._busy[future] = child
            child.conn.send_bytes(request)
            threading.Thread(target=self._await, args=(future, child), daemon=True).start()

    def _await(self, future: cf.Future[Any], child: _Child) -> None:
        try:
            reply = codec.unpack(child.conn.recv_bytes(_MAX_MESSAGE), max_bytes=_MAX_MESSAGE)
        except (EOFError, OSError):
            reply = {"ok": False, "error": "the job's process died", "tb": ""}
        with self._lock:
            if self._busy.pop(future, None) is None:
                return  # abandoned: the child was killed and replaced
            self._idle.append(child if child.proc.is_alive() else _Child(self.app))
            self._dispatch()
        if future.set_running_or_notify_cancel():
            if reply.get("ok"):
                future.set_result(reply.get("result"))
            else:
                future.set_exception(JobError(reply.get("error", "?"), reply.get("tb", "")))

    def abandon(self, future: cf.Future[Any]) -> None:
        """Kill the child running ``future`` (it overran its timeout) and replace it."""
        with self._lock:
            child = self._busy.pop(future, None)
            if child is None:
                self._waiting = [(f, r) for f, r in self._waiting if f is not future]
                return
            if child.proc.pid is not None:
                os.kill(child.proc.pid, signal.SIGKILL)
            child.proc.join(5)
            self._idle.append(_Child(self.app))
            self._dispatch()

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        with self._lock:
            children = self._idle + list(self._busy.values())
            self._idle, self._busy = [], {}
        for child in children:
            child.conn.close()
            if child.proc.is_alive() and child.proc.pid is not None:
                os.kill(child.proc.pid, signal.SIGTERM)
            child.proc.join(5)
