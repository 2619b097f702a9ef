"""One reading shared by every viewer, taken off the event loop, at most once a second.

Each page polls the JSON view; the :class:`Hub` answers from its last reading
while that is fresher than ``min_interval_s``, else starts one reading (in a
thread: :func:`~liftline.dashboard.collect.collect` blocks) that every viewer
asking meanwhile waits for. So a hundred open pages cost the servers what one
does, and a slow server delays the answer, never the loop (``collect`` is
bounded by ``query_timeout_s``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from liftline.dashboard import view
from liftline.dashboard.collect import WATCHED_MAX, collect
from liftline.jobs.dead import replay
from liftline.settings import Settings

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0
Collect = Callable[..., dict[str, Any]]


class Hub:
    """The dashboard's shared state in one process: the last view and the history."""

    def __init__(self, settings: Settings, *, min_interval_s: float = MIN_INTERVAL_S,
                 collector: Collect = collect, replayer: Callable[..., list[str]] = replay,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.min_interval_s = min_interval_s
        self.history = view.History()
        self.readings = 0
        self.watched: list[str] = []  # jobs replayed from the page, newest last
        self._collect = collector
        self._replay = replayer
        self._clock = clock
        self._view: dict[str, Any] | None = None
        self._started = float("-inf")  # when the last reading began (clock)
        self._task: asyncio.Task[dict[str, Any]] | None = None
        # A listing of the dead-letter queue holds its jobs unacked for a moment;
        # a replay started then would not find them. The two take turns.
        self._dead_lock = threading.Lock()

    async def current(self) -> dict[str, Any]:
        """The view: the last one if fresh, else the one being read (or a new reading)."""
        if self._view is not None and self._clock() - self._started < self.min_interval_s:
            return self._view
        if self._task is None:
            self._started = self._clock()
            self._task = asyncio.get_running_loop().create_task(self._read())
        # Shielded: a viewer that goes away must not cancel the others' reading.
        return await asyncio.shield(self._task)

    async def _read(self) -> dict[str, Any]:
        try:
            reading = await asyncio.to_thread(self._collect, self.settings,
                                              watched=list(self.watched),
                                              dead_lock=self._dead_lock)
            self.history.add(reading)
            self.readings += 1
            self._view = {**view.build(reading, self.history), "reading": self.readings}
            return self._view
        finally:
            self._task = None

    async def replay(self, job_id: str) -> list[str]:
        """Replay one dead job (:func:`liftline.jobs.dead.replay`); NotFound if it is not
        dead. The next view is read afresh and follows the job."""
        def run() -> list[str]:
            with self._dead_lock:
                return self._replay(self.settings, [job_id])

        done = await asyncio.to_thread(run)
        for replayed in done:
            if replayed in self.watched:
                self.watched.remove(replayed)
            self.watched.append(replayed)
        del self.watched[:-WATCHED_MAX]
        self._started = float("-inf")  # show the replay at the next poll
        log.info("dashboard replayed dead job(s) %s", ", ".join(done))
        return done
