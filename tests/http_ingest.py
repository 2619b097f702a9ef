"""Helpers for tests of the HTTP ingest service: a JSON client and a server runner.

Import as ``from http_ingest import …``. The server is the real thing: ``python
-m liftline ingest`` in a subprocess on a free port (see
:class:`liftline.ingest.process.IngestProcess`).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import REPO, worker_env

from liftline.ingest.process import IngestProcess
from liftline.servers.base import free_port
from liftline.settings import Settings


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any  # decoded JSON, or the text when it is not JSON
    elapsed_s: float

    @property
    def ticket(self) -> str:
        return self.body["ticket"]


class Http:
    """A small JSON client; one keep-alive connection per thread."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.token = token
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port,
                                                                 timeout=self.timeout_s)
            with self._lock:
                self._opened.append(conn)
        return conn

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        if self.token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        began = time.monotonic()
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=sent)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed a kept-alive connection (e.g. after a 413): reconnect once.
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        elapsed = time.monotonic() - began
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            self._local.conn = None
        text = payload.decode(errors="replace")
        try:
            decoded: Any = json.loads(text)
        except ValueError:
            decoded = text
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      decoded, elapsed)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def close(self) -> None:
        """Close every connection any thread opened."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


class Servers:
    """Ingest processes for one test; all are stopped after it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[IngestProcess] = []
        self.clients: list[Http] = []

    def client(self, server: IngestProcess, **kw: Any) -> Http:
        """A client of ``server``, closed after the test."""
        client = Http(server.url, **kw)
        self.clients.append(client)
        return client

    def start(self, settings: Settings, *, app: str | None = None, processes: int = 1,
              timeout_s: float = 60, **overrides: Any) -> IngestProcess:
        port = free_port()
        settings = settings.replace(ingest_port=port, **overrides)
        extra = {k: v for k, v in worker_env(settings).items() if k == "PYTHONPATH"}
        server = IngestProcess(settings, self.log_dir / f"ingest-{port}.log", app=app,
                               processes=processes, cwd=REPO, extra_env=extra).start()
        self.started.append(server)
        try:
            server.wait_ready(timeout_s)
        except Exception as exc:
            raise AssertionError(f"ingest did not start: {exc}\n{server.log_tail()}") from exc
        return server

    def stop_all(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.started:
            server.stop()
