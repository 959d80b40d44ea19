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
    Contact,
    CsatRating,
    Message,
    Ticket,
    TicketTag,
    Watcher,
)
from helpdesk.refs import format_ticket_ref


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
    kinds: Sequence[str] = ("public",) if public_only else ("public", "internal", "system")
    messages = (await session.execute(
        select(Message).where(Message.ticket_id == ticket.id, Message.kind.in_(kinds))
        .order_by(Message.created_at, Message.id)
    )).unique().scalars()
    view["messages"] = [message_view(m) for m in messages]
    if ticket.merged_into_id:
        target = await session.get(Ticket, ticket.merged_into_id)
        view["merged_into"] = format_ticket_ref(
            target.number, settings.tickets.prefix, settings.tickets.digits) if target else None
    return view
