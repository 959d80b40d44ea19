"""`helpdesk tickets list | show | link | unlink | task | revoke-links`: the admin's view
of the tickets, and the changes an admin (or an agent, ``--as``) makes from the shell."""

from __future__ import annotations

import dataclasses
import sys
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
from helpdesk.ticketquery import PRESETS
from helpdesk.views import link_line

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from helpdesk.audit import Actor
    from helpdesk.runtime import Runtime
    from helpdesk.ticketquery import TicketQuery

SLA_STATES = ("on_track", "warning", "breached", "paused", "met")


@click.group()
@config_option
def tickets(config_path: str | None) -> None:
    """List and inspect tickets."""


def filter_options(f: Any) -> Any:
    """The saved views and filters, as ``tickets list``, ``search`` and ``bulk`` take them."""
    options = [
        click.option("--preset", type=click.Choice(PRESETS),
                     help="A saved view: my-open (with --agent), urgent-unassigned, "
                          "sla-breaching (warning or breached, as the SLA daemon last "
                          "recorded), overdue."),
        click.option("--agent", default="", help="Whose my-open view."),
        click.option("--status", "statuses", multiple=True,
                     help="In this status (any case; again for several)."),
        click.option("--assignee", default="", help="Assigned to this agent."),
        click.option("--unassigned", is_flag=True, help="Assigned to nobody."),
        click.option("--priority", "priorities", multiple=True, help="Of this priority."),
        click.option("--category", default="", help="Of this category."),
        click.option("--type", "type_", default="", help="Of this type (any case)."),
        click.option("--organization", default="",
                     help="Of this organization (name or domain)."),
        click.option("--tag", "tags", multiple=True, help="With this tag (again: all)."),
        click.option("--since", default=None, help="Created at or after (ISO 8601, UTC)."),
        click.option("--until", default=None, help="Created before (ISO 8601, UTC)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def query_of(rt: Runtime, options: dict[str, Any]) -> TicketQuery:
    """The `TicketQuery` the filter options ask for; a usage error for an unknown name."""
    from helpdesk.cli_sla import parse_instant
    from helpdesk.ticketquery import QueryError, TicketQuery, canonical, merge, preset

    o = options
    try:
        names = canonical(rt.settings, statuses=o["statuses"], priorities=o["priorities"],
                          category=o["category"], type=o["type_"])
        filters = TicketQuery(
            assignee=o["assignee"].strip().lower(), unassigned=o["unassigned"],
            organization=o["organization"], tags=o["tags"], since=parse_instant(o["since"]),
            until=parse_instant(o["until"]), **names)  # type: ignore[arg-type]
        if not o["preset"]:
            return filters
        return merge(preset(o["preset"], rt.settings, rt.clock(), agent=o["agent"]), filters)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None


@tickets.command("list")
@config_option
@filter_options
@click.option("--sla", "sla_filter", type=click.Choice(SLA_STATES),
              help="Only tickets whose worst SLA clock is in this state now.")
@click.option("--deleted", is_flag=True, help="The trash: deleted tickets, not yet purged.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_list(ctx: click.Context, config_path: str | None, sla_filter: str | None,
                       deleted: bool, limit: int | None, offset: int, as_json: bool,
                       **options: Any) -> None:
    """List tickets, newest first, with their SLA state: a saved view and/or filters."""
    from helpdesk.cli_sla import sla_state, sla_summaries
    from helpdesk.ticketquery import TicketQuery, statement
    from helpdesk.views import ticket_summary

    async def work(rt: Runtime) -> None:
        now = rt.clock()
        query = dataclasses.replace(query_of(rt, options), deleted=deleted)
        if sla_filter is None:
            query = dataclasses.replace(query, limit=limit, offset=offset)
        async with rt.read_sessions() as session:
            found = list((await session.execute(statement(query, rt.settings)))
                         .unique().scalars())
            slas = await sla_summaries(session, rt.settings, found, now)
            rows = []
            for t in found:
                row = ticket_summary(t, rt.settings)
                row["sla"] = sla_state(slas[t.id])
                if sla_filter is None or row["sla"] == sla_filter:
                    rows.append(row)
        if sla_filter is not None:  # the exact state is known only after evaluating
            rows = rows[offset:][:limit] if limit is not None else rows[offset:]
        if as_json:
            echo_json(rows)
            return
        if not rows:
            filtered = query != TicketQuery() or sla_filter
            click.echo("no matching tickets" if filtered else "no tickets", err=True)
        for r in rows:
            click.echo(f"{r['number']}  {r['status']:<11} {r['priority']:<8} "
                       f"{r['type']:<15} {r['sla']:<9} "
                       f"{(r['requester'] or {}).get('email', ''):<30} {r['subject']}")
    await with_runtime(ctx, work, read_only=True)


@tickets.command("search")
@config_option
@click.argument("words")
@filter_options
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True,
              help="At most this many tickets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_search(ctx: click.Context, config_path: str | None, words: str,
                         limit: int, as_json: bool, **options: Any) -> None:
    """Find tickets by words in subjects, messages (notes too) and requesters, best first."""
    from helpdesk.models import Ticket
    from helpdesk.search import search
    from helpdesk.views import ticket_summary

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        query = query_of(rt, options)
        async with rt.read_sessions() as session:
            hits = await search(session, rt.settings, words, filters=query, limit=limit)
            rows = []
            for hit in hits:
                ticket = await session.get(Ticket, hit.ticket_id)
                assert ticket is not None
                rows.append({**ticket_summary(ticket, rt.settings), "rank": hit.rank,
                             "found_in": hit.where, "snippet": hit.snippet})
            return rows
    rows = await with_runtime(ctx, work, read_only=True)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("nothing found", err=True)
    for r in rows:
        click.echo(f"{r['number']}  {r['status']:<11} {r['subject']}\n"
                   f"    {r['found_in']}: {r['snippet']}")


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


@tickets.command("history")
@config_option
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def tickets_history(ctx: click.Context, config_path: str | None, ref: str,
                          as_json: bool) -> None:
    """A ticket's timeline: who changed what, from what to what, when."""
    from helpdesk.views import load_ticket, ticket_history

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.read_sessions() as session:
            ticket = await load_ticket(session, parse_ticket_ref(rt.settings, ref))
            return await ticket_history(session, ticket.id)
    entries = await with_runtime(ctx, work, read_only=True)
    if as_json:
        echo_json(entries)
        return
    for entry in entries:
        click.echo(change_line(entry))


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


BULK_FIELDS = ("status", "priority", "category", "type", "assignee")
BULK_CHUNK = 100
"""Tickets changed per transaction: a long bulk change never holds the write lock long."""


def _pairs(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        field, sep, wanted = value.partition("=")
        field = field.strip().lower()
        if not sep or field not in BULK_FIELDS or not wanted.strip():
            raise click.BadParameter(f"{value!r}: give FIELD=VALUE, FIELD one of "
                                     f"{', '.join(BULK_FIELDS)}", param_hint="--set")
        out[field] = wanted.strip()
    return out


@tickets.command("bulk")
@config_option
@_AS
@click.argument("refs", nargs=-1)
@filter_options
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="status=S priority=P category=C type=T assignee=EMAIL|none (more pairs "
                   "may follow, space-separated).")
@click.option("--add-tag", "add_tags", multiple=True, help="Add this tag.")
@click.option("--remove-tag", "remove_tags", multiple=True, help="Remove this tag.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.pass_context
@run_async
async def tickets_bulk(ctx: click.Context, config_path: str | None, as_agent: str | None,
                       refs: tuple[str, ...], sets: tuple[str, ...], add_tags: tuple[str, ...],
                       remove_tags: tuple[str, ...], dry_run: bool, **options: Any) -> None:
    """Change many tickets at once: REFS, or a saved view and filters."""
    from helpdesk.directory import find_agent
    from helpdesk.models import Ticket
    from helpdesk.permissions import UPDATE
    from helpdesk.ticketquery import TicketQuery, canonical, statement
    from helpdesk.tickets import TicketService

    settings = settings_of(ctx)
    # `--set status=S priority=P`: the pairs after the first arrive as arguments
    wanted = _pairs([*sets, *(r for r in refs if "=" in r)])
    numbers = [parse_ticket_ref(settings, r) for r in refs if "=" not in r]
    if not wanted and not add_tags and not remove_tags:
        raise click.UsageError("nothing to change: give --set, --add-tag or --remove-tag")

    async def work(rt: Runtime) -> None:
        from helpdesk.ticketquery import QueryError

        query = query_of(rt, options)
        if not numbers and query == TicketQuery():
            raise click.UsageError("which tickets? give REFS, --preset or a filter")
        try:
            names = canonical(rt.settings, statuses=[wanted["status"]] if "status" in wanted
                              else [], priorities=[wanted["priority"]]
                              if "priority" in wanted else [],
                              category=wanted.get("category", ""), type=wanted.get("type", ""))
        except QueryError as exc:
            raise click.UsageError(str(exc)) from None
        target = {**wanted, **{k: v for k, v in {
            "status": (names.get("statuses") or [None])[0],  # type: ignore[index]
            "priority": (names.get("priorities") or [None])[0],  # type: ignore[index]
            "category": names.get("category"), "type": names.get("type")}.items() if v}}
        async with rt.read_sessions() as session:
            stmt = statement(query, rt.settings).with_only_columns(Ticket.number)
            if numbers:
                stmt = stmt.where(Ticket.number.in_(numbers))
            chosen = list((await session.execute(stmt)).scalars())
            if "assignee" in target and target["assignee"].lower() != "none":
                agent = await find_agent(session, target["assignee"])
                if agent is None or not agent.is_active:
                    raise click.UsageError(f"{target['assignee']} is not an active agent")
        missing = sorted(set(numbers) - set(chosen))
        if missing:
            t = rt.settings.tickets
            raise click.UsageError("no such ticket (or not matching the filters): " + ", ".join(
                f"{t.prefix}{n:0{t.digits}d}" for n in missing))
        click.echo(f"{len(chosen)} ticket(s): " + ", ".join(
            [f"{k}={v}" for k, v in target.items()] + [f"+{x}" for x in add_tags]
            + [f"-{x}" for x in remove_tags]) + (" (dry run: nothing changed)"
                                                 if dry_run else ""))
        changed = 0
        with click.progressbar(length=len(chosen), label="changing", file=sys.stderr,
                               hidden=dry_run) as bar:
            for first in range(0, len(chosen), BULK_CHUNK):
                chunk = chosen[first:first + BULK_CHUNK]
                async with rt.sessions() as session, session.begin():
                    actor = await acting(session, rt, as_agent, (UPDATE,),
                                         doing="change tickets")
                    service = TicketService.for_runtime(session, rt)
                    agent = None
                    if target.get("assignee", "none").lower() != "none":
                        agent = await find_agent(session, target["assignee"])
                    for number in chunk:
                        ticket = await service.get(number, for_update=True)
                        plan = _plan(service, ticket, target, add_tags, remove_tags,
                                     await service.tags(ticket))
                        if dry_run:
                            click.echo(f"  {service.reference(ticket)}: "
                                       + ("; ".join(plan) or "no change"))
                            continue
                        if plan:
                            await _apply(service, ticket, target, agent, add_tags,
                                         remove_tags, actor)
                            changed += 1
                    await service.tx.flush()
                bar.update(len(chunk))
        if not dry_run:
            click.echo(f"changed {changed} of {len(chosen)} ticket(s)")
    await with_runtime(ctx, work)


def _plan(service: Any, ticket: Any, target: dict[str, str], add_tags: tuple[str, ...],
          remove_tags: tuple[str, ...], tags: list[str]) -> list[str]:
    """What a bulk change would do to ``ticket``, one phrase per field (pure)."""
    plan = []
    for field in ("status", "priority", "category", "type"):
        if field in target and getattr(ticket, field) != target[field]:
            plan.append(f"{field} {getattr(ticket, field)} -> {target[field]}")
    if "assignee" in target:
        now = ticket.assignee.email if ticket.assignee else "none"
        if now.lower() != target["assignee"].lower():
            plan.append(f"assignee {now} -> {target['assignee']}")
    plan += [f"+{x.lower()}" for x in add_tags if x.lower() not in tags]
    plan += [f"-{x.lower()}" for x in remove_tags if x.lower() in tags]
    return plan


async def _apply(service: Any, ticket: Any, target: dict[str, str], agent: Any,
                 add_tags: tuple[str, ...], remove_tags: tuple[str, ...], actor: Any) -> None:
    if "status" in target:
        await service.set_status(ticket, target["status"], actor, reason="bulk change")
    if "priority" in target:
        await service.set_priority(ticket, target["priority"], actor)
    if "category" in target:
        await service.set_category(ticket, target["category"], actor)
    if "type" in target:
        await service.set_type(ticket, target["type"], actor)
    if "assignee" in target:
        await service.assign(ticket, agent, actor)
    if add_tags:
        await service.add_tags(ticket, add_tags, actor)
    if remove_tags:
        await service.remove_tags(ticket, remove_tags, actor)


@tickets.command("delete")
@config_option
@_AS
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
@run_async
async def tickets_delete(ctx: click.Context, config_path: str | None, as_agent: str | None,
                         refs: tuple[str, ...]) -> None:
    """Move tickets to the trash (tickets list --deleted; restore; purge)."""
    await _trash(ctx, as_agent, refs, "delete")


@tickets.command("restore")
@config_option
@_AS
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
@run_async
async def tickets_restore(ctx: click.Context, config_path: str | None, as_agent: str | None,
                          refs: tuple[str, ...]) -> None:
    """Take tickets out of the trash."""
    await _trash(ctx, as_agent, refs, "restore")


async def _trash(ctx: click.Context, as_agent: str | None, refs: tuple[str, ...],
                 verb: str) -> None:
    from helpdesk.permissions import DELETE
    from helpdesk.tickets import TicketService

    settings = settings_of(ctx)
    numbers = [parse_ticket_ref(settings, r) for r in refs]

    async def work(rt: Runtime) -> int:
        async with rt.sessions() as session, session.begin():
            actor = await acting(session, rt, as_agent, (DELETE,), doing=f"{verb} tickets")
            service = TicketService.for_runtime(session, rt)
            done = 0
            for number in numbers:
                ticket = await service.get(number, for_update=True)
                done += await (service.delete if verb == "delete" else service.restore)(
                    ticket, actor)
            await service.tx.flush()
            return done
    done = await with_runtime(ctx, work)
    click.echo(f"{'deleted' if verb == 'delete' else 'restored'} {done} of "
               f"{len(numbers)} ticket(s)")


@tickets.command("purge")
@config_option
@click.option("--older-than", "older_than", required=True, metavar="DAYS",
              help="Purge tickets deleted this long ago: 30d (or 30), 12h.")
@click.option("--dry-run", is_flag=True, help="Show what would be purged.")
@click.pass_context
@run_async
async def tickets_purge(ctx: click.Context, config_path: str | None, older_than: str,
                        dry_run: bool) -> None:
    """Remove for good the tickets in the trash longer than --older-than."""
    import getpass
    import re
    from datetime import timedelta

    from sqlalchemy import select

    from helpdesk.audit import Actor
    from helpdesk.models import Ticket
    from helpdesk.tickets import TicketService

    match = re.fullmatch(r"\s*(\d+)\s*([dh]?)\s*", older_than)
    if match is None:
        raise click.BadParameter(f"{older_than!r}: give days like 30d (or hours: 12h)",
                                 param_hint="--older-than")
    age = (timedelta(hours=int(match.group(1))) if match.group(2) == "h"
           else timedelta(days=int(match.group(1))))

    async def work(rt: Runtime) -> list[str]:
        before = rt.clock() - age
        async with rt.read_sessions() as session:
            numbers = list((await session.execute(select(Ticket.number).where(
                Ticket.deleted_at.is_not(None), Ticket.deleted_at <= before)
                .order_by(Ticket.number))).scalars())
        purged = []
        for number in numbers:  # one transaction a ticket: a long purge holds no lock long
            async with rt.sessions() as session, session.begin():
                service = TicketService.for_runtime(session, rt)
                ticket = await service.get(number, for_update=True)
                purged.append(service.reference(ticket))
                if not dry_run and ticket.deleted_at is not None:
                    await service.purge(ticket, Actor("cli", getpass.getuser()))
                    await service.tx.flush()
        return purged
    purged = await with_runtime(ctx, work)
    for reference in purged:
        click.echo(f"  {reference}")
    click.echo(f"{'would purge' if dry_run else 'purged'} {len(purged)} ticket(s) deleted "
               f"more than {older_than.strip()} ago")


@tickets.command("export")
@config_option
@filter_options
@click.option("--format", "fmt", type=click.Choice(["csv", "pdf"]), default="csv",
              show_default=True, help="pdf needs helpdesk[reports] and -o FILE.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default stdout).")
@click.pass_context
@run_async
async def tickets_export(ctx: click.Context, config_path: str | None, fmt: str,
                         output: str | None, **options: Any) -> None:
    """Export the tickets a view or filters select, one row each, as CSV or PDF."""
    import csv
    import io

    from sqlalchemy import select

    from helpdesk.cli_sla import sla_state, sla_summaries
    from helpdesk.models import CsatRating
    from helpdesk.ticketquery import statement

    columns = ("number", "subject", "requester", "organization", "status", "priority",
               "category", "type", "assignee", "created", "first_response", "resolved",
               "sla", "csat")

    async def work(rt: Runtime) -> list[list[Any]]:
        t = rt.settings.tickets
        async with rt.read_sessions() as session:
            found = list((await session.execute(statement(query_of(rt, options),
                                                          rt.settings))).unique().scalars())
            slas = await sla_summaries(session, rt.settings, found, rt.clock())
            scores = dict((await session.execute(select(
                CsatRating.ticket_id, CsatRating.score).where(
                CsatRating.ticket_id.in_([x.id for x in found])))).all()) if found else {}
        return [[f"{t.prefix}{x.number:0{t.digits}d}", x.subject, x.requester.email,
                 x.organization.name if x.organization else "", x.status, x.priority,
                 x.category, x.type, x.assignee.email if x.assignee else "",
                 _iso(x.created_at), _iso(x.first_response_at), _iso(x.resolved_at),
                 sla_state(slas[x.id]), scores.get(x.id, "")] for x in found]
    if fmt == "pdf" and output is None:
        raise click.UsageError("--format pdf writes a file: give -o FILE")
    rows = await with_runtime(ctx, work, read_only=True)
    if fmt == "pdf":
        from pathlib import Path

        from helpdesk.report_document import to_pdf

        shown = ("number", "status", "priority", "type", "assignee", "sla", "csat",
                 "subject")
        index = [columns.index(c) for c in shown]
        cells = [[str(r[i])[:40] for i in index] for r in rows]
        widths = [max([len(c), *(len(x[n]) for x in cells)]) for n, c in enumerate(shown)]
        table = "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True))
                          for line in [list(shown), *cells])
        assert output is not None
        Path(output).write_bytes(to_pdf({}, title=f"Tickets ({len(rows)})",
                                        tables={"tickets": table}))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    if output is None:
        click.echo(buffer.getvalue(), nl=False)
    else:
        from pathlib import Path

        Path(output).write_text(buffer.getvalue(), encoding="utf-8")


def _iso(value: Any) -> str:
    return value.isoformat() if value else ""


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


def change_line(entry: dict[str, Any]) -> str:
    """One history entry as a line: when, who, what, from what to what, and why."""
    def values(d: dict[str, Any] | None) -> str:
        return ", ".join(f"{k}={v}" for k, v in (d or {}).items())
    before, after = values(entry.get("before")), values(entry.get("after"))
    change = f"{before} -> {after}" if before else after
    reason = f" ({entry['reason']})" if entry.get("reason") else ""
    when = str(entry["at"])[:19].replace("T", " ")
    return f"{when}  {entry['actor']:<32} {entry['action']:<22} {change}{reason}"


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
        lines += [change_line(e) for e in view.get("history") or []]
    for m in view.get("messages") or []:
        author = m.get("author") or {}
        lines += ["", f"--- {m['kind']} by {_who(author)} at {m['created_at']}", m["text"]]
        for a in m.get("attachments") or []:
            lines.append(f"[attachment] {a['filename']} ({a['content_type']}, "
                         f"{_size(int(a['size']))}, sha256 {a['sha256'][:12]})")
    return "\n".join(lines)
