"""`helpdesk canned ...`, `helpdesk time export` and `helpdesk agents prefs`: agent tooling.

The commands are defined here and registered by ``helpdesk.cli``, after its own
definitions (this module imports its helpers)::

    from helpdesk.cli_agents import agents_prefs, canned, time_group
    cli.add_command(canned)
    cli.add_command(time_group)
    agents.add_command(agents_prefs)
"""

from __future__ import annotations

import csv
import re
import sys
from datetime import UTC, datetime
from typing import Any

import click
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import distinct, func, or_, select

from helpdesk.cli_common import (
    config_option,
    echo_json,
    run_async,
    sqlite_path,
    with_runtime,
)
from helpdesk.config import AGENT_ROLES
from helpdesk.directory import find_agent
from helpdesk.errors import DomainError, NotFoundError
from helpdesk.models import CannedResponse, Organization, Ticket, TimeEntry
from helpdesk.runtime import Runtime

_SHORTCUT_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def _shortcut(value: str) -> str:
    shortcut = value.strip().lower()
    if not _SHORTCUT_RE.fullmatch(shortcut):
        raise click.BadParameter("one word: letters, digits, '.', '_' or '-'",
                                 param_hint="SHORTCUT")
    return shortcut


def check_template(body: str) -> None:
    """Refuse a canned body that is not a valid Jinja2 template (agents would get errors).

    Raises:
        click.BadParameter: with the line and the parser's message.
    """
    try:
        ImmutableSandboxedEnvironment().parse(body)
    except jinja2.TemplateSyntaxError as exc:
        raise click.BadParameter(f"line {exc.lineno}: {exc.message}",
                                 param_hint="--body") from exc


# -- canned responses -------------------------------------------------------------------------

@click.group("canned")
@config_option
def canned(config_path: str | None) -> None:
    """Canned responses agents insert with #canned <shortcut>."""


@canned.command("add")
@config_option
@click.argument("shortcut")
@click.option("--title", required=True, help="What the response is for.")
@click.option("--category", default="", help="One of the configured ticket categories.")
@click.option("--body", help="The text, a Jinja2 template (ticket, requester, agent).")
@click.option("--body-file", type=click.File("r", encoding="utf-8"),
              help="Read the body from a file ('-' for stdin).")
@click.option("--replace", is_flag=True, help="Overwrite an existing response.")
@click.pass_context
@run_async
async def canned_add(ctx: click.Context, config_path: str | None, shortcut: str, title: str,
                     category: str, body: str | None, body_file: Any, replace: bool) -> None:
    """Add a canned response SHORTCUT.

    The body may use {{ ticket.reference }}, {{ ticket.subject }}, {{ ticket.status }},
    {{ ticket.priority }}, {{ ticket.category }}, {{ requester.name }},
    {{ requester.first_name }}, {{ requester.email }}, {{ agent.name }}, {{ agent.email }}.
    """
    key = _shortcut(shortcut)
    if (body is None) == (body_file is None):
        raise click.UsageError("give exactly one of --body or --body-file")
    text = body if body is not None else body_file.read()
    if not text.strip():
        raise click.BadParameter("the body is empty", param_hint="--body")
    check_template(text)

    async def work(rt: Runtime) -> None:
        cat = ""
        if category:
            known = {c.lower(): c for c in rt.settings.tickets.categories}
            if category.strip().lower() not in known:
                raise click.BadParameter(f"unknown category (known: {', '.join(known.values())})",
                                         param_hint="--category")
            cat = known[category.strip().lower()]
        async with rt.sessions() as session, session.begin():
            row = (await session.execute(select(CannedResponse).where(
                CannedResponse.shortcut == key))).scalar_one_or_none()
            if row is not None and not replace:
                raise DomainError(f"canned response {key!r} exists; use --replace")
            if row is None:
                row = CannedResponse(shortcut=key, title=title, category=cat, body=text,
                                     created_at=rt.clock())
                session.add(row)
            else:
                row.title, row.category, row.body = title, cat, text
        click.echo(f"canned response {key} saved")
    await with_runtime(ctx, work)


@canned.command("list")
@config_option
@click.argument("keyword", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def canned_list(ctx: click.Context, config_path: str | None, keyword: str | None,
                      as_json: bool) -> None:
    """List canned responses; KEYWORD searches shortcut, title, category and body."""
    async def work(rt: Runtime) -> None:
        stmt = select(CannedResponse).order_by(CannedResponse.shortcut)
        if keyword:
            like = f"%{keyword.strip().lower()}%"
            stmt = stmt.where(or_(*(func.lower(col).like(like) for col in (
                CannedResponse.shortcut, CannedResponse.title, CannedResponse.category,
                CannedResponse.body))))
        async with rt.read_sessions() as session:
            rows = (await session.execute(stmt)).scalars().all()
        data = [{"shortcut": r.shortcut, "title": r.title, "category": r.category}
                for r in rows]
        if as_json:
            echo_json(data)
            return
        for d in data:
            click.echo(f"{d['shortcut']:<24} {d['category']:<16} {d['title']}")
    await with_runtime(ctx, work, read_only=True)


async def _get_canned(rt: Runtime, shortcut: str) -> CannedResponse:
    async with rt.read_sessions() as session:
        row = (await session.execute(select(CannedResponse).where(
            CannedResponse.shortcut == _shortcut(shortcut)))).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no canned response {shortcut!r}")
    return row


@canned.command("show")
@config_option
@click.argument("shortcut")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def canned_show(ctx: click.Context, config_path: str | None, shortcut: str,
                      as_json: bool) -> None:
    """Show one canned response with its template body."""
    async def work(rt: Runtime) -> None:
        row = await _get_canned(rt, shortcut)
        if as_json:
            echo_json({"shortcut": row.shortcut, "title": row.title,
                        "category": row.category, "body": row.body})
            return
        click.echo(f"{row.shortcut}: {row.title}" + (f" [{row.category}]" if row.category
                                                     else ""))
        click.echo("")
        click.echo(row.body)
    await with_runtime(ctx, work, read_only=True)


@canned.command("remove")
@config_option
@click.argument("shortcut")
@click.pass_context
@run_async
async def canned_remove(ctx: click.Context, config_path: str | None, shortcut: str) -> None:
    """Delete a canned response."""
    async def work(rt: Runtime) -> None:
        row = await _get_canned(rt, shortcut)
        async with rt.sessions() as session, session.begin():
            await session.delete(await session.get(CannedResponse, row.id))
        click.echo(f"canned response {row.shortcut} removed")
    await with_runtime(ctx, work)


# -- time -------------------------------------------------------------------------------------

@click.group("time")
@config_option
def time_group(config_path: str | None) -> None:
    """Time agents logged with #time."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def billable_minutes(rt: Runtime, since: datetime | None,
                           until: datetime | None) -> list[dict[str, Any]]:
    """Logged support time per organization of the ticket, ``since <= at < until``."""
    stmt = (select(Organization.name, Organization.domain,
                   func.count(distinct(TimeEntry.ticket_id)), func.count(TimeEntry.id),
                   func.sum(TimeEntry.minutes))
            .select_from(TimeEntry).join(Ticket, Ticket.id == TimeEntry.ticket_id)
            .outerjoin(Organization, Organization.id == Ticket.organization_id)
            .group_by(Organization.id, Organization.name, Organization.domain)
            .order_by(Organization.name))
    if since is not None:
        stmt = stmt.where(TimeEntry.created_at >= since)
    if until is not None:
        stmt = stmt.where(TimeEntry.created_at < until)
    async with rt.read_sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [{"organization": name or "(no organization)", "domain": domain or "",
             "tickets": int(tickets), "entries": int(entries), "minutes": int(minutes or 0),
             "hours": f"{(minutes or 0) / 60:.2f}"}
            for name, domain, tickets, entries, minutes in rows]


@time_group.command("export")
@config_option
@click.option("--since", type=click.DateTime(_DATE_FORMATS), help="From (UTC), inclusive.")
@click.option("--until", type=click.DateTime(_DATE_FORMATS), help="Until (UTC), exclusive.")
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@click.pass_context
@run_async
async def time_export(ctx: click.Context, config_path: str | None, since: datetime | None,
                      until: datetime | None, fmt: str) -> None:
    """Billable support time per organization, as CSV on stdout."""
    start, end = _utc(since), _utc(until)
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--until must be after --since")

    async def work(rt: Runtime) -> None:
        data = await billable_minutes(rt, start, end)
        writer = csv.DictWriter(sys.stdout, lineterminator="\n", fieldnames=[
            "organization", "domain", "tickets", "entries", "minutes", "hours"])
        writer.writeheader()
        writer.writerows(data)
    await with_runtime(ctx, work, read_only=True)


# -- agents -----------------------------------------------------------------------------------

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


@click.group()
@config_option
def agents(config_path: str | None) -> None:
    """Manage agents (the people who answer tickets)."""


@agents.command("add")
@config_option
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.pass_context
@run_async
async def agents_add(ctx: click.Context, config_path: str | None, email: str, name: str) -> None:
    """Add (or reactivate) an agent."""
    from helpdesk import directory

    address = email.strip()
    if not _ADDRESS.match(address):
        raise click.BadParameter(f"{email!r} is not an email address (local@domain.tld)",
                                 param_hint="EMAIL")

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as session, session.begin():
            agent = await directory.add_agent(session, address, name)
        where = sqlite_path(rt.settings) or "the configured database"
        click.echo(f"agent {agent.email} ({agent.name or 'no name'}) in {where}")
    await with_runtime(ctx, work)


@agents.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def agents_list(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """List agents."""
    from helpdesk.models import Agent

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            rows = (await session.execute(select(Agent).order_by(Agent.email))).scalars().all()
        now = rt.clock()
        data: list[dict[str, Any]] = [{"email": a.email, "name": a.name, "active": a.is_active,
                 "role": a.role, "away_until": a.away_until.isoformat() if a.is_away(now)
                 and a.away_until else None} for a in rows]
        if as_json:
            echo_json(data)
        for a in [] if as_json else data:
            away = f" (away until {a['away_until'][:16]})" if a["away_until"] else ""
            click.echo(f"{a['email']:<40} {a['role']:<6} {a['name']}"
                       f"{'' if a['active'] else ' (inactive)'}{away}")
    await with_runtime(ctx, work, read_only=True)


@agents.command("role")
@config_option
@click.argument("email")
@click.argument("role", type=click.Choice(AGENT_ROLES))
@click.pass_context
@run_async
async def agents_role(ctx: click.Context, config_path: str | None, email: str,
                      role: str) -> None:
    """Set an agent's role: admin, agent, or light (read, notes, watch)."""
    from helpdesk.directory import find_agent

    async def work(rt: Runtime) -> str:
        async with rt.sessions() as session, session.begin():
            agent = await find_agent(session, email.strip().lower())
            if agent is None:
                raise NotFoundError(f"no agent {email} (helpdesk agents list)")
            before, agent.role = agent.role, role
        granted = getattr(rt.settings.permissions, role)
        return (f"{agent.email}: role {before} -> {role} "
                f"(may: {', '.join(granted) or 'nothing'})")
    click.echo(await with_runtime(ctx, work))


# -- agent notification preferences -----------------------------------------------------------

_PREFS = {"new_ticket": "notify_new_ticket", "assignment": "notify_assignment",
          "reply": "notify_reply", "status": "notify_status", "board": "notify_board"}


@click.command("prefs")
@config_option
@click.argument("email")
@click.option("--new-ticket/--no-new-ticket", default=None, help="Mail me new tickets.")
@click.option("--assignment/--no-assignment", default=None, help="Mail me assignments.")
@click.option("--reply/--no-reply", default=None, help="Mail me requester replies.")
@click.option("--status/--no-status", default=None, help="Mail me status changes.")
@click.option("--board/--no-board", default=None, help="Mail me my daily board.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def agents_prefs(ctx: click.Context, config_path: str | None, email: str,
                       new_ticket: bool | None, assignment: bool | None, reply: bool | None,
                       status: bool | None, board: bool | None, as_json: bool) -> None:
    """Show or change which notifications agent EMAIL receives."""
    wanted = {"new_ticket": new_ticket, "assignment": assignment, "reply": reply,
              "status": status, "board": board}

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as session, session.begin():
            agent = await find_agent(session, email)
            if agent is None:
                raise NotFoundError(f"no agent {email}")
            for name, value in wanted.items():
                if value is not None:
                    setattr(agent, _PREFS[name], value)
            current = {name: bool(getattr(agent, col)) for name, col in _PREFS.items()}
        if as_json:
            echo_json({"email": agent.email, **current})
            return
        click.echo(agent.email + ": " + ", ".join(
            f"{name.replace('_', '-')} {'on' if on else 'off'}" for name, on in current.items()))
    await with_runtime(ctx, work, read_only=True)


agents.add_command(agents_prefs)


# -- availability ------------------------------------------------------------------------------

@agents.command("away")
@config_option
@click.argument("email")
@click.option("--until", "until", required=True, type=click.DateTime(_DATE_FORMATS),
              help="Back at this time (UTC; a date alone means its midnight).")
@click.pass_context
@run_async
async def agents_away(ctx: click.Context, config_path: str | None, email: str,
                      until: datetime) -> None:
    """Mark agent EMAIL away until a time: auto-assignment skips them until then."""
    await _set_away(ctx, email, until.replace(tzinfo=UTC))


@agents.command("back")
@config_option
@click.argument("email")
@click.pass_context
@run_async
async def agents_back(ctx: click.Context, config_path: str | None, email: str) -> None:
    """Mark agent EMAIL back: auto-assignment considers them again."""
    await _set_away(ctx, email, None)


async def _set_away(ctx: click.Context, email: str, until: datetime | None) -> None:
    async def work(rt: Runtime) -> None:
        async with rt.sessions() as session, session.begin():
            agent = await find_agent(session, email)
            if agent is None:
                raise NotFoundError(f"no agent {email}")
            agent.away_until = until
        click.echo(f"{agent.email}: away until {until:%Y-%m-%d %H:%M} UTC" if until
                   else f"{agent.email}: back")
    await with_runtime(ctx, work)
