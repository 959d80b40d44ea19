"""`helpdesk tickets list | show | link | unlink | task | revoke-links`: the admin's view
of the tickets, and the changes an admin (or an agent, ``--as``) makes from the shell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from helpdesk.cli_common import (
    config_option,
    echo_json,
    parse_ticket_ref,
    run_async,
    settings_of,
    with_runtime,
)
from helpdesk.cli_portal import revoke_links
from helpdesk.views import link_line

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from helpdesk.audit import Actor
    from helpdesk.runtime import Runtime

SLA_STATES = ("on_track", "warning", "breached", "paused", "met")


@click.group()
@config_option
def tickets(config_path: str | None) -> None:
    """List and inspect tickets."""


def canonical_status(rt: Runtime, status: str) -> str:
    """The desk's status named ``status`` in any case; a usage error naming the others."""
    from helpdesk.statuses import find

    found = find(rt.settings.tickets.statuses, status)
    if found is None:
        raise click.BadParameter(
            f"unknown status {status!r}; the statuses are: "
            + ", ".join(s.name for s in rt.settings.tickets.statuses), param_hint="--status")
    return found.name


def canonical_type(ctx: click.Context, type_: str) -> str:
    """The configured type named ``type_`` in any case; a usage error naming the others."""
    t = settings_of(ctx).tickets
    found = t.canonical_type(type_)
    if found is None:
        raise click.BadParameter(f"unknown type {type_!r}; the types are: "
                                 + ", ".join(x.name for x in t.types), param_hint="--type")
    return found


@tickets.command("list")
@config_option
@click.option("--status", help="Only tickets in this status (any case).")
@click.option("--type", "type_", help="Only tickets of this type (any case).")
@click.option("--sla", "sla_filter", type=click.Choice(SLA_STATES),
              help="Only tickets whose worst SLA clock is in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_list(ctx: click.Context, config_path: str | None, status: str | None,
                       type_: str | None, sla_filter: str | None, as_json: bool) -> None:
    """List tickets, newest first, with their SLA state."""
    from sqlalchemy import select

    from helpdesk.cli_sla import sla_state, sla_summaries
    from helpdesk.models import Ticket
    from helpdesk.views import ticket_summary

    wanted_type = canonical_type(ctx, type_) if type_ else None

    async def work(rt: Runtime) -> None:
        wanted = canonical_status(rt, status) if status else None
        async with rt.read_sessions() as session:
            stmt = select(Ticket).order_by(Ticket.number.desc())
            if wanted:
                stmt = stmt.where(Ticket.status == wanted)
            if wanted_type:
                stmt = stmt.where(Ticket.type == wanted_type)
            found = list((await session.execute(stmt)).unique().scalars())
            slas = await sla_summaries(session, rt.settings, found, rt.clock())
            rows = []
            for t in found:
                row = ticket_summary(t, rt.settings)
                row["sla"] = sla_state(slas[t.id])
                if sla_filter is None or row["sla"] == sla_filter:
                    rows.append(row)
        if as_json:
            echo_json(rows)
            return
        if not rows:
            click.echo("no matching tickets" if wanted or wanted_type or sla_filter
                       else "no tickets", err=True)
        for r in rows:
            click.echo(f"{r['number']}  {r['status']:<11} {r['priority']:<8} "
                       f"{r['type']:<15} {r['sla']:<9} "
                       f"{(r['requester'] or {}).get('email', ''):<30} {r['subject']}")
    await with_runtime(ctx, work, read_only=True)


@tickets.command("show")
@config_option
@click.argument("ref")
@click.option("--history", is_flag=True, help="Add the ticket's history (who changed what).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the history).")
@click.pass_context
@run_async
async def tickets_show(ctx: click.Context, config_path: str | None, ref: str, history: bool,
                       as_json: bool) -> None:
    """Show one ticket with its whole thread (internal notes included)."""
    from helpdesk.cli_sla import sla_summary
    from helpdesk.views import load_ticket, ticket_detail

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            ticket = await load_ticket(session, parse_ticket_ref(rt.settings, ref))
            view = await ticket_detail(session, rt.settings, ticket)
            view["sla"] = await sla_summary(session, rt.settings, ticket, rt.clock())
        if as_json:
            echo_json(view)
        else:
            click.echo(render_ticket(view, history=history))
    await with_runtime(ctx, work, read_only=True)


async def acting(session: AsyncSession, rt: Runtime, as_agent: str | None,
                 needs: tuple[str, ...], doing: str) -> Actor:
    """Who a CLI change is by: the agent ``--as`` names (whose role must allow it), else
    the admin at the shell."""
    import getpass

    from helpdesk.audit import Actor
    from helpdesk.directory import find_agent
    from helpdesk.permissions import require

    if as_agent is None:
        return Actor("cli", getpass.getuser())
    agent = await find_agent(session, as_agent.strip().lower())
    if agent is None or not agent.is_active:
        raise click.BadParameter(f"{as_agent} is not an active agent", param_hint="--as")
    require(rt.settings.permissions, agent.role, needs, doing=doing)
    return Actor("agent", agent.email, agent.id)


_AS = click.option("--as", "as_agent", metavar="EMAIL",
                   help="Act as this agent: their role must allow it, and the history "
                        "names them.")


@tickets.command("link")
@config_option
@_AS
@click.argument("ref")
@click.argument("target", nargs=-1, required=True)
@click.pass_context
@run_async
async def tickets_link(ctx: click.Context, config_path: str | None, as_agent: str | None,
                       ref: str, target: tuple[str, ...]) -> None:
    """Link ticket REF: [related|parent|child] TICKET, or task|issue|incident URL [TITLE]."""
    await _link(ctx, "link", as_agent, ref, target)


@tickets.command("unlink")
@config_option
@_AS
@click.argument("ref")
@click.argument("target", nargs=-1, required=True)
@click.pass_context
@run_async
async def tickets_unlink(ctx: click.Context, config_path: str | None, as_agent: str | None,
                         ref: str, target: tuple[str, ...]) -> None:
    """Remove a link of ticket REF, named as `tickets link` named it."""
    await _link(ctx, "unlink", as_agent, ref, target)


async def _link(ctx: click.Context, verb: str, as_agent: str | None, ref: str,
                words: tuple[str, ...]) -> None:
    from helpdesk.permissions import command_needs
    from helpdesk.relations import parse_link
    from helpdesk.tickets import TicketService

    settings = settings_of(ctx)
    number = parse_ticket_ref(settings, ref)
    try:
        target = parse_link(list(words), settings.tickets.prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from None

    async def work(rt: Runtime) -> str:
        async with rt.sessions() as session, session.begin():
            actor = await acting(session, rt, as_agent, command_needs(verb), doing=verb)
            service = TicketService.for_runtime(session, rt)
            ticket = await service.get(number)
            other = await service.get(target.number) if target.number is not None else None
            if verb == "unlink":
                await service.unlink(ticket, target.kind, actor, other=other, url=target.url)
                done = "unlinked from"
            elif await service.link(ticket, target.kind, actor, other=other, url=target.url,
                                    title=target.title):
                done = f"linked ({target.kind}) to"
            else:
                done = f"was already linked ({target.kind}) to"
            await service.tx.flush()
            what = service.reference(other) if other is not None else target.url
            return f"{service.reference(ticket)} {done} {what}"
    click.echo(await with_runtime(ctx, work))


@tickets.command("task")
@config_option
@_AS
@click.argument("ref")
@click.option("--title", default="", help="The task's title (default: the subject).")
@click.pass_context
@run_async
async def tickets_task(ctx: click.Context, config_path: str | None, as_agent: str | None,
                       ref: str, title: str) -> None:
    """Turn ticket REF into a task at the [tasks] endpoint; its URL becomes a task link."""
    from helpdesk.permissions import command_needs
    from helpdesk.tasks import request_task
    from helpdesk.tickets import TicketService

    settings = settings_of(ctx)
    number = parse_ticket_ref(settings, ref)

    async def work(rt: Runtime) -> str:
        async with rt.sessions() as session, session.begin():
            actor = await acting(session, rt, as_agent, command_needs("task"),
                                 doing="make tasks")
            service = TicketService.for_runtime(session, rt)
            ticket = await service.get(number)
            await request_task(rt, service, ticket, title, actor)
            await service.tx.flush()
            return service.reference(ticket)
    reference = await with_runtime(ctx, work)
    click.echo(f"{reference}: the task is requested; the workers POST it to "
               f"{settings.tasks.endpoint} and link what it answers")


tickets.add_command(revoke_links)


def _who(person: dict[str, Any] | None) -> str:
    if not person:
        return "-"
    email, name = person.get("email") or "", person.get("name") or ""
    return f"{name} <{email}>" if name and email else (email or name or "-")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _change_line(entry: dict[str, Any]) -> str:
    def values(d: dict[str, Any] | None) -> str:
        return ", ".join(f"{k}={v}" for k, v in (d or {}).items())
    before, after = values(entry.get("before")), values(entry.get("after"))
    change = f"{before} -> {after}" if before else after
    reason = f" ({entry['reason']})" if entry.get("reason") else ""
    return f"{entry['at']}  {entry['actor']}  {entry['action']}  {change}{reason}"


def render_ticket(view: dict[str, Any], *, history: bool = False) -> str:
    """``tickets show`` as text: every field the JSON has, then the thread (pure)."""
    sla = view.get("sla") or {}
    clocks = [f"{k.replace('_', ' ')} {c['state']} (due {c.get('due_at') or '-'})"
              for k in ("first_response", "resolution") if isinstance(c := sla.get(k), dict)]
    csat = view.get("csat")
    fields = [
        ("status", view["status"]), ("priority", view["priority"]),
        ("category", view.get("category") or "-"), ("type", view.get("type") or "-"),
        ("channel", view.get("channel") or "-"), ("queue", view.get("queue") or "-"),
        ("requester", _who(view.get("requester"))), ("assignee", _who(view.get("assignee"))),
        ("organization", view.get("organization") or "-"),
        ("tags", ", ".join(view.get("tags") or []) or "-"),
        ("watchers", ", ".join(_who(w) for w in view.get("watchers") or []) or "-"),
        ("created", view.get("created_at") or "-"), ("updated", view.get("updated_at") or "-"),
        ("due", view.get("due_at") or "-"),
        ("sla", (f"{sla.get('policy', '')}: " if sla.get("policy") else "")
         + ("; ".join(clocks) or "-")),
        ("csat", f"{csat['score']}/5" + (f" \"{csat['comment']}\"" if csat.get("comment")
                                         else "") if csat else "-"),
    ]
    if view.get("merged_into"):
        fields.append(("merged into", view["merged_into"]))
    for link in view.get("links") or []:
        fields.append(("link", link_line(link)))
    lines = [f"{view['number']}  {view['subject']}", ""]
    lines += [f"{name + ':':<14}{value}" for name, value in fields]
    if history:
        lines += ["", "--- history"]
        lines += [_change_line(e) for e in view.get("history") or []]
    for m in view.get("messages") or []:
        author = m.get("author") or {}
        lines += ["", f"--- {m['kind']} by {_who(author)} at {m['created_at']}", m["text"]]
        for a in m.get("attachments") or []:
            lines.append(f"[attachment] {a['filename']} ({a['content_type']}, "
                         f"{_size(int(a['size']))}, sha256 {a['sha256'][:12]})")
    return "\n".join(lines)
