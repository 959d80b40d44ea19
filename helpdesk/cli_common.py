"""Plumbing every `helpdesk` subcommand shares: the config option, settings, the runtime.

Its own module so that the command modules need not import `helpdesk.cli` (which loads
them): no cycle, and a command imports only what it uses. Only the light modules are
imported at the top; the database stack is loaded when a command opens the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from helpdesk.errors import DomainError

if TYPE_CHECKING:
    from helpdesk.config import Settings
    from helpdesk.runtime import Runtime

EX_DATAERR = 65
EX_TEMPFAIL = 75
T = TypeVar("T")


class NoDatabase(DomainError):
    """Raised when a command that only reads finds no database where the config points."""

    exit_code = 1


def config_path_of(ctx: click.Context) -> str | None:
    """``--config`` as given on this command or on any group above it (nearest wins)."""
    here: click.Context | None = ctx
    while here is not None:
        path = here.params.get("config_path") or (here.obj or {}).get("config_path")
        if path:
            return str(path)
        here = here.parent
    return None


def settings_of(ctx: click.Context) -> Settings:
    """The process's settings, loaded once (and logging configured) on first use."""
    from helpdesk.config import load_settings
    from helpdesk.logs import configure_logging

    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(config_path_of(ctx))
        configure_logging(obj["settings"].logging, fmt=obj.get("log_format"))
    return obj["settings"]  # type: ignore[no-any-return]


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH`` accepted on every command and group, before or after its name."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        help="Config file (default: $HELPDESK_CONFIG, ./helpdesk.toml).")(f)


def run_async(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        import asyncio

        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def sqlite_path(settings: Settings) -> Path | None:
    """The absolute path of the SQLite database file, None for another database."""
    path = settings.database.sqlite_file
    return path.resolve() if path is not None else None


def require_database(settings: Settings) -> None:
    """Refuse to go on when the SQLite database is not where the config says.

    A read-only command run from another folder would otherwise create an empty second
    database (the default URL is relative) and report that nothing is there.

    Raises:
        NoDatabase: the file does not exist.
    """
    path = sqlite_path(settings)
    if path is not None and not path.exists():
        raise NoDatabase(f"no database at {path} ([database] url in {settings.source}); "
                         "`helpdesk init` creates it")


async def with_runtime(ctx: click.Context, work: Callable[[Runtime], Awaitable[T]], *,
                       migrate: bool = True, read_only: bool = False) -> T:
    """Open the runtime, run ``work`` with it, close it.

    ``read_only``: the command only looks, so it never creates a database.
    """
    from helpdesk.runtime import Runtime

    settings = settings_of(ctx)
    if read_only:
        require_database(settings)
    rt = await Runtime.open(settings, migrate=migrate)
    try:
        return await work(rt)
    finally:
        await rt.close()


def parse_ticket_ref(settings: Settings, ref: str) -> int:
    """The ticket a command argument names: ``TKT-000042``, ``tkt-42``, ``[TKT-42]``, ``42``.

    Raises:
        click.BadParameter: the argument is not one ticket reference.
    """
    from helpdesk import refs

    number = refs.parse_ticket_ref(ref, settings.tickets.prefix)
    if number is None:
        raise click.BadParameter(f"not a ticket reference: {ref!r}")
    return number


def echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def serve_roles(ctx: click.Context, roles: tuple[str, ...]) -> None:
    """Run daemon roles until stopped, on the configured event loop."""
    from helpdesk import eventloop
    from helpdesk.daemon import run_roles

    settings = settings_of(ctx)
    eventloop.run(run_roles(settings, roles=roles), settings.instance.event_loop)
