"""`helpdesk statuses | orgs`: the admin keeps the desk's statuses and organizations.

A status change is written to the database and the running daemons are told to read the
statuses again (as ``helpdesk reload`` does), so a status added here can be used by
mail at once.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Any, get_args

import click

from helpdesk.audit import Actor
from helpdesk.cli_common import config_option, echo_json, run_async, settings_of, with_runtime
from helpdesk.config import StatusClass

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime

CLASSES = get_args(StatusClass)


def _cli_actor() -> Actor:
    return Actor("cli", getpass.getuser())


def _tell_daemons(ctx: click.Context) -> str:
    from helpdesk.daemon import signal_daemons

    told = signal_daemons(settings_of(ctx))
    return f"; {told} running daemon(s) told" if told else ""


@click.group()
@config_option
def statuses(config_path: str | None) -> None:
    """Ticket statuses: list, add, rename, recolor, reorder, remove."""


@statuses.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def statuses_list(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """List the statuses in order, with their class, colour and how many tickets are in each."""
    from helpdesk import statuses as model

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.read_sessions() as session:
            counts = await model.in_use(session)
        return [{"name": s.name, "class": s.status_class, "color": s.color,
                 "tickets": counts.get(s.name, 0)} for s in rt.settings.tickets.statuses]
    rows = await with_runtime(ctx, work)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<20} {r['class']:<9} {r['color'] or '-':<9} {r['tickets']}")


async def _change(ctx: click.Context, change: Any) -> Any:
    """Run ``change(service)`` in one transaction; tell the daemons after the commit."""
    from helpdesk.tickets import TicketService

    async def work(rt: Runtime) -> Any:
        async with rt.sessions() as session, session.begin():
            result = await change(TicketService.for_runtime(session, rt))
        return result
    return await with_runtime(ctx, work)


@statuses.command("add")
@config_option
@click.argument("name")
@click.option("--class", "status_class", type=click.Choice(CLASSES), required=True,
              help="What the desk does in it: active (SLA runs), paused (SLA stops), "
                   "resolved, closed.")
@click.option("--color", default="", help="#rrggbb or a colour name.")
@click.option("--before", default=None, help="Put it before this status (default: last).")
@click.pass_context
@run_async
async def statuses_add(ctx: click.Context, config_path: str | None, name: str,
                       status_class: StatusClass, color: str, before: str | None) -> None:
    """Add a status."""
    from helpdesk import statuses as model

    new = await _change(ctx, lambda svc: model.add(svc.session, name, status_class,
                                                   color=color, before=before))
    click.echo(f"status {new.name} ({new.status_class}) added" + _tell_daemons(ctx))


@statuses.command("rename")
@config_option
@click.argument("name")
@click.argument("new_name")
@click.pass_context
@run_async
async def statuses_rename(ctx: click.Context, config_path: str | None, name: str,
                          new_name: str) -> None:
    """Rename a status; its tickets keep it, the history keeps the old name."""
    from helpdesk import statuses as model

    count = await _change(ctx, lambda svc: model.rename(svc, name, new_name, _cli_actor()))
    click.echo(f"status {name} is now {new_name} ({count} ticket(s))" + _tell_daemons(ctx))
    for where in model.config_mentions(settings_of(ctx), name):
        click.echo(f"warning: {where} still names {name!r}; change it there too", err=True)


@statuses.command("recolor")
@config_option
@click.argument("name")
@click.argument("color")
@click.pass_context
@run_async
async def statuses_recolor(ctx: click.Context, config_path: str | None, name: str,
                           color: str) -> None:
    """Give a status another colour (#rrggbb or a name)."""
    from helpdesk import statuses as model

    new = await _change(ctx, lambda svc: model.recolor(svc.session, name, color))
    click.echo(f"status {new.name} is {new.color or 'uncoloured'}" + _tell_daemons(ctx))


@statuses.command("reorder")
@config_option
@click.argument("names", nargs=-1, required=True)
@click.pass_context
@run_async
async def statuses_reorder(ctx: click.Context, config_path: str | None,
                           names: tuple[str, ...]) -> None:
    """Put the NAMES first, in this order; the others follow in theirs."""
    from helpdesk import statuses as model

    order = await _change(ctx, lambda svc: model.reorder(svc.session, names))
    click.echo("statuses: " + ", ".join(s.name for s in order) + _tell_daemons(ctx))


@statuses.command("remove")
@config_option
@click.argument("name")
@click.option("--move-to", default=None, help="Move the tickets in it to this status.")
@click.pass_context
@run_async
async def statuses_remove(ctx: click.Context, config_path: str | None, name: str,
                          move_to: str | None) -> None:
    """Remove a status no ticket is in (or move its tickets with --move-to)."""
    from helpdesk import statuses as model

    moved = await _change(ctx, lambda svc: model.remove(svc, name, _cli_actor(),
                                                        move_to=move_to))
    click.echo(f"status {name} removed" + (f"; {moved} ticket(s) moved to {move_to}"
                                           if moved else "") + _tell_daemons(ctx))


# -- organizations ------------------------------------------------------------------------


@click.group()
@config_option
def orgs(config_path: str | None) -> None:
    """Organizations: their domains, members and roles."""


@orgs.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def orgs_list(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """List organizations with their domains, members and tickets."""
    from sqlalchemy import func, select

    from helpdesk import organizations
    from helpdesk.models import Contact, Organization, Ticket

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.read_sessions() as session:
            members = dict((await session.execute(select(
                Contact.organization_id, func.count()).group_by(Contact.organization_id))).all())
            tickets = dict((await session.execute(select(
                Ticket.organization_id, func.count()).group_by(Ticket.organization_id))).all())
            return [{"name": o.name, "domains": await organizations.domains(session, o),
                     "members": members.get(o.id, 0), "tickets": tickets.get(o.id, 0)}
                    for o in (await session.execute(
                        select(Organization).order_by(Organization.name))).scalars().all()]
    rows = await with_runtime(ctx, work, read_only=True)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no organizations yet (they are made as their first senders write in)",
                   err=True)
    for r in rows:
        click.echo(f"{r['name']:<30} {', '.join(r['domains']) or '-':<30} "
                   f"{r['members']} member(s), {r['tickets']} ticket(s)")


@orgs.command("show")
@config_option
@click.argument("org")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def orgs_show(ctx: click.Context, config_path: str | None, org: str,
                    as_json: bool) -> None:
    """Show an organization (by name or domain): members with their roles, tickets."""
    from sqlalchemy import select

    from helpdesk import organizations
    from helpdesk.models import Contact, Ticket
    from helpdesk.refs import format_ticket_ref

    async def work(rt: Runtime) -> dict[str, Any]:
        t = rt.settings.tickets
        async with rt.read_sessions() as session:
            found = await organizations.find(session, org)
            people = (await session.execute(select(Contact).where(
                Contact.organization_id == found.id).order_by(Contact.email))).unique()
            tickets = (await session.execute(select(Ticket).where(
                Ticket.organization_id == found.id).order_by(Ticket.number.desc()))).unique()
            return {"name": found.name, "domains": await organizations.domains(session, found),
                    "members": [{"email": c.email, "name": c.name, "role": c.role}
                                for c in people.scalars()],
                    "tickets": [{"number": format_ticket_ref(x.number, t.prefix, t.digits),
                                 "status": x.status, "type": x.type, "subject": x.subject,
                                 "requester": x.requester.email} for x in tickets.scalars()]}
    view = await with_runtime(ctx, work, read_only=True)
    if as_json:
        echo_json(view)
        return
    click.echo(f"{view['name']}  ({', '.join(view['domains']) or 'no domain'})")
    click.echo("\nmembers:")
    for m in view["members"]:
        click.echo(f"  {m['email']:<40} {m['role']:<7} {m['name']}")
    click.echo("\ntickets:")
    for x in view["tickets"]:
        click.echo(f"  {x['number']}  {x['status']:<11} {x['type']:<15} {x['requester']:<30} "
                   f"{x['subject']}")


@orgs.command("add-domain")
@config_option
@click.argument("org")
@click.argument("domain")
@click.pass_context
@run_async
async def orgs_add_domain(ctx: click.Context, config_path: str | None, org: str,
                          domain: str) -> None:
    """Make DOMAIN's senders members of ORG (its own organization, if any, is folded in)."""
    from helpdesk import organizations

    async def change(svc: Any) -> tuple[str, int, int]:
        found = await organizations.find(svc.session, org)
        contacts, moved = await organizations.add_domain(svc, found, domain, _cli_actor())
        await svc.tx.flush()
        return found.name, contacts, moved
    name, contacts, moved = await _change(ctx, change)
    click.echo(f"{domain.strip().lower()} belongs to {name}"
               + (f"; {contacts} contact(s) and {moved} ticket(s) moved in"
                  if contacts or moved else ""))


@orgs.command("set-role")
@config_option
@click.argument("email")
@click.argument("role", type=click.Choice(["owner", "admin", "member"]))
@click.pass_context
@run_async
async def orgs_set_role(ctx: click.Context, config_path: str | None, email: str,
                        role: str) -> None:
    """Give a contact a role in their organization: owner, admin or member."""
    from helpdesk import organizations

    contact = await _change(ctx, lambda svc: organizations.set_role(
        svc.session, email, role))  # type: ignore[arg-type]
    org = contact.organization.name if contact.organization else "their organization"
    reach = ("sees all of its tickets in the portal" if role != "member"
             else "sees the tickets they opened or watch")
    click.echo(f"{contact.email} is {role} of {org}: {reach}")
