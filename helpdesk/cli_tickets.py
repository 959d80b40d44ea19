"""`helpdesk tickets list | show | revoke-links`: the admin's view of the tickets."""

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

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime

SLA_STATES = ("on_track", "warning", "breached", "paused", "met")


@click.group()
@config_option
def tickets(config_path: str | None) -> None:
    """List and inspect tickets."""


def canonical_status(ctx: click.Context, status: str) -> str:
    """The configured status named ``status`` in any case; a usage error naming the others."""
    known = [s.name for s in settings_of(ctx).tickets.statuses]

    def key(text: str) -> str:  # "In Progress", "in_progress" and "in-progress" alike
        return " ".join(text.lower().replace("_", " ").replace("-", " ").split())

    for name in known:
        if key(name) == key(status):
            return name
    raise click.BadParameter(f"unknown status {status!r}; the statuses are: "
                             + ", ".join(known), param_hint="--status")


@tickets.command("list")
@config_option
@click.option("--status", help="Only tickets in this status (any case).")
@click.option("--sla", "sla_filter", type=click.Choice(SLA_STATES),
              help="Only tickets whose worst SLA clock is in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_list(ctx: click.Context, config_path: str | None, status: str | None,
                       sla_filter: str | None, as_json: bool) -> None:
    """List tickets, newest first, with their SLA state."""
    from sqlalchemy import select

    from helpdesk.cli_sla import sla_state, sla_summaries
    from helpdesk.models import Ticket
    from helpdesk.views import ticket_summary

    wanted = canonical_status(ctx, status) if status else None

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            stmt = select(Ticket).order_by(Ticket.number.desc())
            if wanted:
                stmt = stmt.where(Ticket.status == wanted)
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
            click.echo("no matching tickets" if wanted or sla_filter else "no tickets", err=True)
        for r in rows:
            click.echo(f"{r['number']}  {r['status']:<11} {r['priority']:<8} {r['sla']:<9} "
                       f"{(r['requester'] or {}).get('email', ''):<30} {r['subject']}")
    await with_runtime(ctx, work, read_only=True)


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
    from helpdesk.views import load_ticket, ticket_detail

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            ticket = await load_ticket(session, parse_ticket_ref(rt.settings, ref))
            view = await ticket_detail(session, rt.settings, ticket)
            view["sla"] = await sla_summary(session, rt.settings, ticket, rt.clock())
        if as_json:
            echo_json(view)
        else:
            click.echo(render_ticket(view))
    await with_runtime(ctx, work, read_only=True)


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


def render_ticket(view: dict[str, Any]) -> str:
    """``tickets show`` as text: every field the JSON has, then the thread (pure)."""
    sla = view.get("sla") or {}
    clocks = [f"{k.replace('_', ' ')} {c['state']} (due {c.get('due_at') or '-'})"
              for k in ("first_response", "resolution") if isinstance(c := sla.get(k), dict)]
    csat = view.get("csat")
    fields = [
        ("status", view["status"]), ("priority", view["priority"]),
        ("category", view.get("category") or "-"),
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
    lines = [f"{view['number']}  {view['subject']}", ""]
    lines += [f"{name + ':':<14}{value}" for name, value in fields]
    for m in view.get("messages") or []:
        author = m.get("author") or {}
        lines += ["", f"--- {m['kind']} by {_who(author)} at {m['created_at']}", m["text"]]
        for a in m.get("attachments") or []:
            lines.append(f"[attachment] {a['filename']} ({a['content_type']}, "
                         f"{_size(int(a['size']))}, sha256 {a['sha256'][:12]})")
    return "\n".join(lines)
