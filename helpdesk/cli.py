"""`helpdesk ...`: the command line, and the one place that wires the process roles together.

Errors are rendered once, here: a configuration error is one line and exit 2; a domain
error is its message and its exit code; a temporary failure is exit 75 (EX_TEMPFAIL) so
that an MTA pipe retries; an unexpected error is logged and also exit 75. No traceback
reaches the operator's terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

import click
from sqlalchemy import select

from helpdesk import directory, schema
from helpdesk.config import Settings, load_settings
from helpdesk.errors import ConfigError, HelpdeskError, NotFoundError, TransientError
from helpdesk.logs import configure_logging
from helpdesk.models import Agent, InboundSpool, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from helpdesk.views import iso, load_ticket, ticket_detail, ticket_summary

EX_DATAERR = 65
EX_TEMPFAIL = 75
T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        path = ctx.params.get("config_path") or obj.get("config_path")
        obj["settings"] = load_settings(path)
        configure_logging(obj["settings"].logging)
    return obj["settings"]  # type: ignore[no-any-return]


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config PATH`` accepted on every command, before or after the subcommand name."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        help="Config file (default: $HELPDESK_CONFIG, ./helpdesk.toml).")(f)


def run_async(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def serve_roles(ctx: click.Context, roles: tuple[str, ...]) -> None:
    """Run daemon roles until stopped, on the configured event loop."""
    from helpdesk import eventloop
    from helpdesk.daemon import run_roles

    settings = _settings(ctx)
    eventloop.run(run_roles(settings, roles=roles), settings.instance.event_loop)


async def _with_runtime(ctx: click.Context, work: Callable[[Runtime], Awaitable[T]], *,
                        migrate: bool = True) -> T:
    rt = await Runtime.open(_settings(ctx), migrate=migrate)
    try:
        return await work(rt)
    finally:
        await rt.close()


def parse_ticket_ref(settings: Settings, ref: str) -> int:
    from mailgate.thread import find_ticket_numbers

    numbers = find_ticket_numbers(ref, settings.tickets.prefix)
    if numbers:
        return numbers[0]
    if ref.strip().isdigit():
        return int(ref.strip())
    raise click.BadParameter(f"not a ticket reference: {ref!r}")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """helpdesk: an email-first help desk daemon."""
    ctx.ensure_object(dict)["config_path"] = config_path


# -- lifecycle ----------------------------------------------------------------------------

@cli.command()
@config_option
@click.pass_context
@run_async
async def init(ctx: click.Context, config_path: str | None) -> None:
    """Create or migrate the database (idempotent)."""
    settings = _settings(ctx)

    async def work(rt: Runtime) -> None:
        applied = await schema.migrate(rt.engine)
        for agent in settings.agents:
            async with rt.sessions() as session, session.begin():
                await directory.add_agent(session, agent.email, agent.name)
        click.echo(f"database at revision {schema.head_revision()}"
                   + (" (migrated)" if applied else " (already up to date)"))
    await _with_runtime(ctx, work, migrate=False)


@cli.command()
@config_option
@click.pass_context
def run(ctx: click.Context, config_path: str | None) -> None:
    """Run every role in one process: SMTP, IMAP, workers, SLA daemon, portal."""
    serve_roles(ctx, ("mailgate", "worker", "sla", "portal"))


@cli.command()
@config_option
@click.pass_context
def mailgate(ctx: click.Context, config_path: str | None) -> None:
    """Run the inbound gateway only: SMTP receiver and configured IMAP pollers."""
    serve_roles(ctx, ("mailgate",))


@cli.command()
@config_option
@click.pass_context
def worker(ctx: click.Context, config_path: str | None) -> None:
    """Run the outbox relay and the Dramatiq workers that send mail."""
    serve_roles(ctx, ("worker",))


@cli.command()
@config_option
@click.pass_context
def portal(ctx: click.Context, config_path: str | None) -> None:
    """Run the requester portal (signed links) only."""
    serve_roles(ctx, ("portal",))


# -- ingest: helpdesk/cli_ingest.py (the MTA pipe; registered in _register_commands) ----

def _listeners(rt: Runtime) -> list[Any]:
    from helpdesk.notify import Notifier

    return [Notifier(rt)]


# -- tickets ------------------------------------------------------------------------------

@cli.group()
def tickets() -> None:
    """List and inspect tickets."""


@tickets.command("list")
@config_option
@click.option("--status", help="Only tickets in this status.")
@click.option("--sla", "sla_filter",
              type=click.Choice(["on_track", "warning", "breached", "paused", "met"]),
              help="Only tickets whose worst SLA clock is in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_list(ctx: click.Context, config_path: str | None, status: str | None,
                       sla_filter: str | None, as_json: bool) -> None:
    """List tickets, newest first, with their SLA state."""
    from helpdesk.cli_sla import sla_state, sla_summaries

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            stmt = select(Ticket).order_by(Ticket.number.desc())
            if status:
                stmt = stmt.where(Ticket.status == status)
            found = list((await session.execute(stmt)).unique().scalars())
            slas = await sla_summaries(session, rt.settings, found, rt.clock())
            rows = []
            for t in found:
                row = ticket_summary(t, rt.settings)
                row["sla"] = sla_state(slas[t.id])
                if sla_filter is None or row["sla"] == sla_filter:
                    rows.append(row)
        if as_json:
            _echo_json(rows)
            return
        for r in rows:
            click.echo(f"{r['number']}  {r['status']:<11} {r['priority']:<8} {r['sla']:<9} "
                       f"{(r['requester'] or {}).get('email', ''):<30} {r['subject']}")
    await _with_runtime(ctx, work)


@tickets.command("show")
@config_option
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_show(ctx: click.Context, config_path: str | None, ref: str,
                       as_json: bool) -> None:
    """Show one ticket with its whole thread (internal notes included)."""
    from helpdesk.cli_sla import sla_summary

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            ticket = await load_ticket(session, parse_ticket_ref(rt.settings, ref))
            view = await ticket_detail(session, rt.settings, ticket)
            view["sla"] = await sla_summary(session, rt.settings, ticket, rt.clock())
        if as_json:
            _echo_json(view)
            return
        click.echo(f"{view['number']}  {view['subject']}")
        click.echo(f"status {view['status']}  priority {view['priority']}  "
                   f"category {view['category']}  requester {view['requester']['email']}")
        for m in view["messages"]:
            click.echo(f"\n--- {m['kind']} by {m['author']['email'] or m['author']['name']} "
                       f"at {m['created_at']}")
            click.echo(m["text"])
    await _with_runtime(ctx, work)


# -- agents -------------------------------------------------------------------------------

@cli.group()
def agents() -> None:
    """Manage agents (the people who answer tickets)."""


@agents.command("add")
@config_option
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.pass_context
@run_async
async def agents_add(ctx: click.Context, config_path: str | None, email: str, name: str) -> None:
    """Add (or reactivate) an agent."""
    async def work(rt: Runtime) -> None:
        async with rt.sessions() as session, session.begin():
            agent = await directory.add_agent(session, email, name)
        click.echo(f"agent {agent.email} ({agent.name or 'no name'})")
    await _with_runtime(ctx, work)


@agents.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def agents_list(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """List agents."""
    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            rows = (await session.execute(select(Agent).order_by(Agent.email))).scalars().all()
        data = [{"email": a.email, "name": a.name, "active": a.is_active} for a in rows]
        if as_json:
            _echo_json(data)
        for a in [] if as_json else data:
            click.echo(f"{a['email']:<40} {a['name']}{'' if a['active'] else ' (inactive)'}")
    await _with_runtime(ctx, work)


# -- outbox and spool ---------------------------------------------------------------------

@cli.group()
def outbox() -> None:
    """Inspect mail waiting to be sent."""


@outbox.command("list")
@config_option
@click.option("--failed", is_flag=True, help="Only rows that failed permanently.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def outbox_list(ctx: click.Context, config_path: str | None, failed: bool,
                      as_json: bool) -> None:
    """List outbox rows, newest first."""
    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            stmt = select(OutboxRow).order_by(OutboxRow.id.desc())
            if failed:
                stmt = stmt.where(OutboxRow.status == "failed")
            rows = (await session.execute(stmt)).scalars().all()
        data = [{"id": r.id, "kind": r.kind, "status": r.status, "to": r.recipients,
                 "message_id": r.message_id, "attempts": r.attempts, "error": r.last_error,
                 "created_at": iso(r.created_at), "sent_at": iso(r.sent_at)} for r in rows]
        if as_json:
            _echo_json(data)
            return
        for d in data:
            to = ",".join(str(a) for a in d["to"] or [])  # type: ignore[union-attr]
            click.echo(f"{d['id']:>6} {d['status']:<8} {d['kind']:<14} {to}"
                       + (f"  {d['error']}" if d["error"] else ""))
    await _with_runtime(ctx, work)


@cli.group()
def spool() -> None:
    """Inspect received raw messages; replay quarantined ones."""


@spool.command("list")
@config_option
@click.option("--quarantined", is_flag=True, help="Only quarantined messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def spool_list(ctx: click.Context, config_path: str | None, quarantined: bool,
                     as_json: bool) -> None:
    """List received messages and what became of them."""
    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            stmt = select(InboundSpool).order_by(InboundSpool.id.desc())
            if quarantined:
                stmt = stmt.where(InboundSpool.status == "quarantined")
            rows = (await session.execute(stmt)).scalars().all()
        data = [{"id": r.id, "status": r.status, "reason": r.reason, "via": r.via,
                 "message_id": r.message_id, "sha256": r.sha256, "size": r.size,
                 "received_at": iso(r.received_at)} for r in rows]
        if as_json:
            _echo_json(data)
            return
        for d in data:
            click.echo(f"{d['id']:>6} {d['status']:<12} {d['via']:<5} {d['reason']}")
    await _with_runtime(ctx, work)


@spool.command("retry")
@config_option
@click.argument("spool_id", type=int)
@click.pass_context
@run_async
async def spool_retry(ctx: click.Context, config_path: str | None, spool_id: int) -> None:
    """Run a quarantined message through the pipeline again."""
    from mailgate.ingest import Gateway

    async def work(rt: Runtime) -> None:
        result = await Gateway(rt, listeners=_listeners(rt)).retry(spool_id)
        click.echo(f"{spool_id}: {result.disposition}"
                   + (f" {result.ticket}" if result.ticket else "")
                   + (f" ({result.reason})" if result.reason else ""))
    await _with_runtime(ctx, work)


def _register_commands() -> None:
    """Attach the command groups that live in their own modules (each imports this one)."""
    from helpdesk import (
        cli_agents,
        cli_config,
        cli_imap,
        cli_ingest,
        cli_outbox,
        cli_portal,
        cli_sla,
    )

    cli.add_command(cli_ingest.ingest)
    cli.add_command(cli_config.config_group)
    cli.add_command(cli_agents.canned)
    cli.add_command(cli_agents.time_group)
    agents.add_command(cli_agents.agents_prefs)
    cli.add_command(cli_imap.imap)
    outbox.add_command(cli_outbox.outbox_retry)
    tickets.add_command(cli_portal.revoke_links)
    cli.add_command(cli_sla.sla)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the CLI and turns every error into one line and an exit code."""
    _register_commands()
    try:
        cli.main(args=argv, prog_name="helpdesk", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"helpdesk: configuration error: {exc}", err=True)
        sys.exit(2)
    except NotFoundError as exc:
        click.echo(f"helpdesk: {exc}", err=True)
        sys.exit(exc.exit_code)
    except TransientError as exc:
        click.echo(f"helpdesk: temporary failure, retry later: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except HelpdeskError as exc:
        click.echo(f"helpdesk: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        import structlog

        from helpdesk.db import is_transient

        structlog.get_logger("helpdesk.cli").error("cli.failed", error=type(exc).__name__,
                                                   exc_info=exc)
        reason = "temporary failure" if is_transient(exc) else "internal error"
        click.echo(f"helpdesk: {reason} ({type(exc).__name__}); see the log", err=True)
        sys.exit(EX_TEMPFAIL)
    sys.exit(0)
