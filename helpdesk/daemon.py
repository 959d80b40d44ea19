"""Process roles started from the CLI: each role's `serve(runtime, stop)` runs until a signal.

Part of the CLI's wiring (the one place that knows every role): `helpdesk run` starts all
roles in one process on the embedded defaults; `helpdesk mailgate|worker|sla|portal` start
one each, for scale-out under systemd. SIGINT and SIGTERM stop every role cleanly.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from helpdesk.config import Settings
from helpdesk.runtime import Runtime

log = structlog.get_logger("helpdesk.daemon")

ROLE_MODULES = {
    "mailgate": "mailgate.service",
    "worker": "responders.service",
    "sla": "sla_daemon.service",
    "portal": "portal_lite.service",
}
Serve = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


def role_server(role: str) -> Serve | None:
    """The role's ``serve`` coroutine function, or None when that role is not built yet."""
    try:
        module = importlib.import_module(ROLE_MODULES[role])
    except ModuleNotFoundError as exc:
        if exc.name and ROLE_MODULES[role].startswith(exc.name):
            return None
        raise
    return getattr(module, "serve", None)


async def run_roles(settings: Settings, roles: Sequence[str]) -> None:
    """Open the runtime (creating/migrating the database), run the roles, stop on a signal."""
    rt = await Runtime.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    for role in roles:
        serve = role_server(role)
        if serve is None:
            log.warning("daemon.role_unavailable", role=role)
            continue
        tasks.append(asyncio.create_task(serve(rt, stop), name=role))
    log.info("daemon.started", roles=[t.get_name() for t in tasks], config=settings.source)
    try:
        if tasks:
            done, _ = await asyncio.wait(
                [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in tasks and task.exception() is not None:
                    log.error("daemon.role_failed", role=task.get_name(),
                              error=repr(task.exception()))
        else:
            await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await rt.close()
        log.info("daemon.stopped")
