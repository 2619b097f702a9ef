"""Run the ingest service under uvicorn, in one process or several.

Each process builds its app from ``LIFTLINE_*`` variables (uvicorn starts the
extra processes itself and they import :func:`liftline.ingest.app.app_from_env`),
so the settings given as flags are handed down through the environment. Every
process has its own producer id, RabbitMQ connections and metrics; they share
the listening socket.
"""

from __future__ import annotations

import os
import socket

from liftline.errors import ServerError
from liftline.settings import Settings

APP_FACTORY = "liftline.ingest.app:app_from_env"


def serve(settings: Settings, *, processes: int = 1, log_level: str = "warning",
          factory: str = APP_FACTORY) -> None:
    """Serve on ``ingest_host:ingest_port`` until SIGINT/SIGTERM (then close cleanly).

    ``factory``: ``module:function`` returning the ASGI app (the benchmark's
    baseline app is served the same way, for a like-for-like comparison).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ.update(settings.to_env())
    config = uvicorn.Config(
        factory, factory=True, host=settings.ingest_host, port=settings.ingest_port,
        workers=processes, log_level=log_level, access_log=False, lifespan="on",
        timeout_graceful_shutdown=10, backlog=2048, server_header=False,
    )
    if processes == 1:
        uvicorn.Server(config).run()
        return
    # uvicorn binds the shared socket with protocol 0, and asyncio only turns Nagle
    # off on sockets whose protocol is TCP: every response would then wait ~40 ms
    # for a delayed ACK. So the socket is bound here, as TCP.
    Multiprocess(config, sockets=[listening_socket(settings.ingest_host,
                                                   settings.ingest_port)]).run()


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (Nagle off on its connections, see above); ServerError if the
    address is taken or not this machine's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock
