"""Process roles started from the CLI: each role's `serve(runtime, stop)` runs until a signal.

Part of the CLI's wiring (the one place that knows every role): `helpdesk run` starts all
roles in one process on the embedded defaults; `helpdesk mailgate|worker|sla|portal` start
one each, for scale-out under systemd. SIGINT and SIGTERM stop every role cleanly. A role
that stops by itself (its port is taken, its server died) stops the others and the process
exits non-zero with one line naming the role and the cause: nothing runs half-started.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from helpdesk.config import Settings
from helpdesk.configcheck import config_warnings
from helpdesk.errors import RoleFailedError
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


def role_enabled(settings: Settings, role: str) -> bool:
    """Whether the configuration switches ``role`` on (``[portal] enabled = false`` does not).

    ``[smtp] enabled`` only switches off the SMTP listener: the mailgate role still polls IMAP.
    """
    return settings.portal.enabled if role == "portal" else True


def database_location(settings: Settings) -> str:
    """Where the data is, for the start-up line: the SQLite file's absolute path, or the
    server URL without its password."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return str(Path(url.database).resolve())
    return url.render_as_string(hide_password=True)


def _failure(role: str, exc: BaseException | None) -> RoleFailedError:
    """One operator-facing line: which role stopped and why, without a traceback."""
    if exc is None:
        return RoleFailedError(f"the {role} role stopped by itself")
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return RoleFailedError(f"the {role} role failed: {cause or type(exc).__name__}")


async def run_roles(settings: Settings, roles: Sequence[str]) -> None:
    """Open the runtime (creating/migrating the database), run the roles, stop on a signal.

    Raises:
        RoleFailedError: a role ended before the stop signal; every other role was stopped.
    """
    rt = await Runtime.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    for role in roles:
        if not role_enabled(settings, role):
            log.info("daemon.role_disabled", role=role)
            continue
        serve = role_server(role)
        if serve is None:
            log.warning("daemon.role_unavailable", role=role)
            continue
        tasks.append(asyncio.create_task(serve(rt, stop), name=role))
    log.info("daemon.started", roles=[t.get_name() for t in tasks], config=settings.source,
             database=database_location(settings),
             storage=str(Path(settings.storage.dir).resolve()))
    for warning in config_warnings(settings, paths=False):  # as `helpdesk config check`
        log.warning("config.warning", warning=warning)
    failed: RoleFailedError | None = None
    try:
        if tasks:
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in tasks:
                if task in done and not stop.is_set():
                    exc = None if task.cancelled() else task.exception()
                    log.error("daemon.role_failed", role=task.get_name(),
                              error=repr(exc) if exc else "stopped by itself")
                    failed = failed or _failure(task.get_name(), exc)
        else:
            await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await rt.close()
        log.info("daemon.stopped")
    if failed is not None:
        raise failed
