"""Read models: tickets rendered as plain dicts (the `--json` shape), for the CLI and the portal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.config import Settings
from helpdesk.errors import NotFoundError
from helpdesk.models import (
    Agent,
    AuditEvent,
    Contact,
    CsatRating,
    Message,
    Ticket,
    TicketLink,
    TicketTag,
    Watcher,
)
from helpdesk.refs import format_ticket_ref
from helpdesk.relations import LABELS, inverse


def person(p: Contact | Agent | None) -> dict[str, str] | None:
    return None if p is None else {"email": p.email, "name": p.name}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_summary(ticket: Ticket, settings: Settings) -> dict[str, Any]:
    t = settings.tickets
    return {
        "number": format_ticket_ref(ticket.number, t.prefix, t.digits),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "type": ticket.type,
        "type_color": next((x.color for x in t.types if x.name == ticket.type), ""),
        "status_color": next((x.color for x in t.statuses if x.name == ticket.status), ""),
        "channel": ticket.channel,
        "queue": ticket.queue,
        "requester": person(ticket.requester),
        "assignee": person(ticket.assignee),
        "organization": ticket.organization.name if ticket.organization else None,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "due_at": iso(ticket.due_at),
    }


def message_view(message: Message) -> dict[str, Any]:
    if message.author_agent is not None:
        author: dict[str, str] | None = {**person(message.author_agent), "role": "agent"}  # type: ignore[dict-item]
    elif message.author_contact is not None:
        author = {**person(message.author_contact), "role": "contact"}  # type: ignore[dict-item]
    else:
        author = {"email": "", "name": "system", "role": "system"}
    return {
        "id": message.id,
        "kind": message.kind,
        "author": author,
        "text": message.text,
        "created_at": iso(message.created_at),
        "message_id": message.message_id,
        "attachments": [
            {"id": a.id, "filename": a.filename, "content_type": a.content_type,
             "size": a.size, "sha256": a.sha256}
            for a in message.attachments
        ],
    }


async def load_ticket(session: AsyncSession, number: int) -> Ticket:
    ticket = (await session.execute(
        select(Ticket).where(Ticket.number == number)
    )).unique().scalar_one_or_none()
    if ticket is None:
        raise NotFoundError(f"no ticket number {number}")
    return ticket


async def ticket_detail(session: AsyncSession, settings: Settings, ticket: Ticket, *,
                        public_only: bool = False) -> dict[str, Any]:
    """The full ticket; ``public_only`` drops internal notes (for anything a requester sees)."""
    view = ticket_summary(ticket, settings)
    view["tags"] = list((await session.execute(
        select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id).order_by(TicketTag.tag)
    )).scalars())
    watchers = (await session.execute(
        select(Watcher).where(Watcher.ticket_id == ticket.id).order_by(Watcher.contact_id)
    )).unique().scalars()
    view["watchers"] = [person(w.contact) for w in watchers]
    rating = (await session.execute(
        select(CsatRating).where(CsatRating.ticket_id == ticket.id)
    )).scalar_one_or_none()
    view["csat"] = None if rating is None else {
        "score": rating.score, "comment": rating.comment, "rated_at": iso(rating.updated_at)}
    view["sla"] = None
    kinds: Sequence[str] = (("public",) if public_only
                            else ("public", "internal", "system", "draft"))
    messages = (await session.execute(
        select(Message).where(Message.ticket_id == ticket.id, Message.kind.in_(kinds))
        .order_by(Message.created_at, Message.id)
    )).unique().scalars()
    view["messages"] = [message_view(m) for m in messages]
    view["links"] = await ticket_links(
        session, settings, ticket.id,
        requester_id=ticket.requester_id if public_only else None)
    if not public_only:
        view["history"] = await ticket_history(session, ticket.id)
    if ticket.merged_into_id:
        target = await session.get(Ticket, ticket.merged_into_id)
        view["merged_into"] = format_ticket_ref(
            target.number, settings.tickets.prefix, settings.tickets.digits) if target else None
    return view


async def ticket_links(session: AsyncSession, settings: Settings, ticket_id: int, *,
                       requester_id: int | None = None) -> list[dict[str, Any]]:
    """Every link of a ticket, read from its end (`helpdesk.relations`): the kind, and the
    other ticket (reference, subject, status) or the URL and title.

    ``requester_id``: what a requester sees, only links to other tickets of theirs (a
    linked ticket of someone else's, or the desk's own tracker, is not theirs to see).
    """
    t = settings.tickets
    other = Ticket.__table__.alias("other")
    out: list[dict[str, Any]] = []
    for mine, theirs, flip in ((TicketLink.ticket_id, TicketLink.other_ticket_id, False),
                               (TicketLink.other_ticket_id, TicketLink.ticket_id, True)):
        rows = await session.execute(
            select(TicketLink.kind, TicketLink.url, TicketLink.title, other.c.number,
                   other.c.subject, other.c.status, other.c.requester_id)
            .outerjoin(other, other.c.id == theirs).where(mine == ticket_id)
            .where(other.c.deleted_at.is_(None))  # a URL link has no other: NULL too
            .order_by(TicketLink.id))
        for row in rows:
            if requester_id is not None and (row.url or row.requester_id != requester_id):
                continue
            kind = inverse(row.kind) if flip else row.kind
            out.append({
                "kind": kind, "label": LABELS.get(kind, kind),
                "ticket": None if row.url else format_ticket_ref(row.number, t.prefix,
                                                                  t.digits),
                "subject": None if row.url else row.subject,
                "status": None if row.url else row.status,
                "url": row.url, "title": row.title or None})
    return out


async def ticket_history(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    """The audit log of a ticket, oldest first, as it was written: a status renamed
    since shows here under the name it had then."""
    rows = await session.execute(
        select(AuditEvent).where(AuditEvent.ticket_id == ticket_id)
        .order_by(AuditEvent.created_at, AuditEvent.id))
    return [{"at": iso(e.created_at), "actor": e.actor, "action": e.action,
             "before": e.before, "after": e.after, "reason": e.reason or None}
            for e in rows.scalars()]


def link_line(link: dict[str, Any]) -> str:
    """One link as a line of text: ``parent TKT-000010 (Open): subject`` or ``task URL``."""
    if link.get("url"):
        return f"{link['label']} {link['url']}" + (f" ({link['title']})" if link.get("title")
                                                   else "")
    return f"{link['label']} {link['ticket']} ({link['status']}): {link['subject']}"
