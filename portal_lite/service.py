"""The ``portal`` process role: serve the portal app with uvicorn until told to stop.

Uvicorn runs programmatically inside the daemon's event loop; its own signal handling is
switched off, because the daemon owns SIGINT/SIGTERM and sets ``stop`` for every role.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn

from helpdesk.runtime import Runtime
from portal_lite.app import create_app

log = structlog.get_logger("portal_lite.service")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn versions
        return None


async def serve(rt: Runtime, stop: asyncio.Event, *, sock: socket.socket | None = None) -> None:
    """Serve the portal on ``[portal] host:port`` (or on ``sock``) until ``stop`` is set.

    Args:
        rt: the process runtime.
        stop: set by the daemon on SIGINT/SIGTERM; in-flight requests then finish.
        sock: an already bound listening socket (tests bind port 0 and pass it).

    Raises:
        RuntimeError: uvicorn could not start (for example, the port is taken).
    """
    settings = rt.settings.portal
    config = uvicorn.Config(
        create_app(rt), host=settings.host, port=settings.port, log_config=None,
        access_log=False, lifespan="off", proxy_headers=True, server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock] if sock else None)
        except SystemExit:  # uvicorn exits the process when it cannot bind
            raise RuntimeError("the portal's web server could not start") from None

    task = asyncio.create_task(run())
    stopping = asyncio.create_task(stop.wait())
    log.info("portal.starting", host=settings.host, port=sock.getsockname()[1] if sock
             else settings.port)
    done, _ = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopping.cancel()
        task.result()
        if not server.started:
            raise RuntimeError("the portal's web server did not start")
        return
    server.should_exit = True
    await task
    log.info("portal.stopped")
