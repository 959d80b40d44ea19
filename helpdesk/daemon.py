"""Process roles started from the CLI: each role's `serve(runtime, stop)` runs until a signal.

Part of the CLI's wiring (the one place that knows every role): `helpdesk run` starts all
roles in one process on the embedded defaults; `helpdesk mailgate|worker|sla|portal` start
one each, for scale-out under systemd. SIGINT and SIGTERM stop every role cleanly. A role
that stops by itself (its port is taken, its server died) stops the others and the process
exits non-zero with one line naming the role and the cause: nothing runs half-started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from helpdesk.config import Settings, load_settings
from helpdesk.configcheck import config_warnings
from helpdesk.errors import ConfigError, RoleFailedError
from helpdesk.runtime import Runtime

log = structlog.get_logger("helpdesk.daemon")

Serve = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


def _mailgate() -> Serve:
    from mailgate.service import serve
    return serve


def _worker() -> Serve:
    from responders.service import serve
    return serve


def _sla() -> Serve:
    from sla_daemon.service import serve
    return serve


def _portal() -> Serve:
    from portal_lite.service import serve
    return serve


ROLES: dict[str, Callable[[], Serve]] = {
    "mailgate": _mailgate, "worker": _worker, "sla": _sla, "portal": _portal,
}
"""Each role's loader: a plain import inside a function, so only the roles a process runs
are loaded (``helpdesk portal`` never loads Dramatiq), the import checker sees every
edge, and a role missing from a broken install is an error at start, not a role skipped."""


def role_server(role: str) -> Serve:
    """The role's ``serve`` coroutine function.

    Raises:
        RoleFailedError: the role's code cannot be imported (a broken install).
    """
    try:
        return ROLES[role]()
    except ImportError as exc:
        raise RoleFailedError(f"the {role} role cannot start: {exc}") from exc


def role_enabled(settings: Settings, role: str) -> bool:
    """Whether the configuration switches ``role`` on (``[portal] enabled = false`` does not).

    ``[smtp] enabled`` only switches off the SMTP listener: the mailgate role still polls IMAP.
    """
    return settings.portal.enabled if role == "portal" else True


def database_location(settings: Settings) -> str:
    """Where the data is, for the start-up line: the SQLite file's absolute path, or the
    server URL without its password."""
    from sqlalchemy.engine import make_url

    path = settings.database.sqlite_file
    if path is not None:
        return str(path.resolve())
    return make_url(settings.database.url).render_as_string(hide_password=True)


def _failure(role: str, exc: BaseException | None) -> RoleFailedError:
    """One operator-facing line: which role stopped and why, without a traceback."""
    if exc is None:
        return RoleFailedError(f"the {role} role stopped by itself")
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return RoleFailedError(f"the {role} role failed: {cause or type(exc).__name__}")


def pid_dir(settings: Settings) -> Path:
    """Where running daemons leave their pid, for ``helpdesk reload``."""
    return Path(settings.storage.dir) / "run"


def write_pidfile(settings: Settings, name: str) -> Path:
    folder = pid_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{os.getpid()}.pid"
    path.write_text(f"{os.getpid()}\n")
    return path


def signal_daemons(settings: Settings) -> int:
    """Send SIGHUP to every daemon that left a pid file; returns how many were told."""
    told = 0
    for path in sorted(pid_dir(settings).glob("*.pid")):
        try:
            pid = int(path.read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError, IndexError):
            path.unlink(missing_ok=True)  # a daemon that is gone
            continue
        told += 1
    return told


_RELOADS: set[asyncio.Task[None]] = set()


def reload_rules(rt: Runtime) -> None:
    """SIGHUP: read the config file again and take its rules; on a mistake keep the old.

    Only teams, assignment rules and automations change without a restart, and the
    statuses are read again from the database (``helpdesk statuses`` changes them).
    """
    task = asyncio.get_running_loop().create_task(rt.refresh_statuses())
    _RELOADS.add(task)  # held until done: the loop keeps only a weak reference
    task.add_done_callback(_RELOADS.discard)
    try:
        fresh = load_settings(rt.settings.source if rt.settings.source != "<embedded defaults>"
                              else None, search=False)
    except ConfigError as exc:
        log.error("daemon.reload_refused", error=str(exc))
        return
    rt.reload_rules(fresh)
    log.info("daemon.reloaded", config=fresh.source, assignment=len(fresh.assignment),
             automations=len(fresh.automations), teams=len(fresh.teams))


async def run_roles(settings: Settings, roles: Sequence[str]) -> None:
    """Open the runtime (creating/migrating the database), run the roles, stop on a signal.

    Raises:
        RoleFailedError: a role cannot be loaded (nothing was started), or a role ended
            before the stop signal (every other role was stopped).
    """
    # Every role is loaded before anything opens: a broken install fails here, at start,
    # instead of running with a role missing.
    servers: dict[str, Serve] = {}
    for role in roles:
        if role_enabled(settings, role):
            servers[role] = role_server(role)
        else:
            log.info("daemon.role_disabled", role=role)
    rt = await Runtime.open(settings)
    # What start-up made (modules, table metadata, templates) lives as long as the process:
    # frozen, the cyclic collector stops walking it at every full collection.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_rules, rt)
    pidfile = write_pidfile(settings, "-".join(roles))
    tasks = [asyncio.create_task(serve(rt, stop), name=role) for role, serve in servers.items()]
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
        with contextlib.suppress(OSError):
            pidfile.unlink()
        log.info("daemon.stopped")
    if failed is not None:
        raise failed
