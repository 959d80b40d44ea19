"""The ticket service: the one writer of tickets and messages; every change is audited.

Each method works inside the caller's session and transaction and adds, in that same
transaction, the audit event of the change (actor, time, before, after). Listeners
registered on the service (notifications -> outbox rows) run inside the transaction too,
so a change and the mail that announces it commit or roll back together. Any change that
can move an SLA clock (status, priority, category, first response) sets the ticket's
``sla_next_at`` to now, which hands the ticket to the SLA daemon's next tick.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import audit
from helpdesk.audit import Actor
from helpdesk.config import Settings
from helpdesk.errors import NotFoundError, UnknownValueError
from helpdesk.history import Change
from helpdesk.models import (
    Agent,
    Attachment,
    Contact,
    Message,
    MessageRef,
    Ticket,
    TicketTag,
    Watcher,
    utcnow,
)
from helpdesk.numbering import next_number
from helpdesk.refs import format_ticket_ref

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class NewAttachment:
    """An attachment whose bytes are already in the blob store."""

    filename: str
    content_type: str
    size: int
    sha256: str
    is_inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True)
class TicketEvent:
    """What just changed, for listeners (notifications) inside the same transaction."""

    action: str
    ticket: Ticket
    actor: Actor
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    message: Message | None = None


Listener = Callable[[TicketEvent], Awaitable[None]]


class TicketService:
    """Ticket operations bound to one session (one transaction's worth of work)."""

    def __init__(self, session: AsyncSession, settings: Settings, *, clock: Clock = utcnow,
                 listeners: Sequence[Listener] = ()) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.listeners = list(listeners)

    # -- vocabulary -------------------------------------------------------------------

    def canonical_status(self, name: str) -> str:
        for s in self.settings.tickets.statuses:
            if s.name.lower() == " ".join(name.split()).lower():
                return s.name
        names = ", ".join(s.name for s in self.settings.tickets.statuses)
        raise UnknownValueError(f"unknown status '{name}' (known: {names})")

    def status_class(self, name: str) -> str:
        return self.settings.status_class(name) or "active"

    def _pick(self, kind: str, value: str, known: Sequence[str]) -> str:
        wanted = " ".join(value.split()).lower()
        for k in known:
            if k.lower() == wanted:
                return k
        raise UnknownValueError(f"unknown {kind} '{value}' (known: {', '.join(known)})")

    def canonical_priority(self, name: str) -> str:
        return self._pick("priority", name, self.settings.tickets.priorities)

    def canonical_category(self, name: str) -> str:
        return self._pick("category", name, self.settings.tickets.categories)

    def canonical_channel(self, name: str) -> str:
        return self._pick("channel", name, self.settings.tickets.channels)

    def reference(self, ticket: Ticket) -> str:
        t = self.settings.tickets
        return format_ticket_ref(ticket.number, t.prefix, t.digits)

    def new_ticket_values(self, *, number: int, requester_id: int,
                          organization_id: int | None, subject: str, channel: str, queue: str,
                          category: str | None, priority: str | None,
                          followup_of_id: int | None, at: datetime) -> dict[str, Any]:
        """The columns of a new ticket: `open_ticket` and the gateway's Core writer share them."""
        t = self.settings.tickets
        return {
            "number": number, "subject": " ".join(subject.split()) or "(no subject)",
            "status": t.statuses[0].name,
            "priority": self.canonical_priority(priority or t.default_priority),
            "category": self.canonical_category(category or t.categories[0]),
            "channel": self.canonical_channel(channel), "queue": queue,
            "requester_id": requester_id, "organization_id": organization_id,
            "link_secret": secrets.token_hex(16), "followup_of_id": followup_of_id,
            "sla_next_at": at, "created_at": at, "updated_at": at,
        }

    # -- lookups ----------------------------------------------------------------------

    async def get(self, number: int, *, for_update: bool = False) -> Ticket:
        stmt = select(Ticket).where(Ticket.number == number)
        if for_update and self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=Ticket)
        ticket = (await self.session.execute(stmt)).unique().scalar_one_or_none()
        if ticket is None:
            t = self.settings.tickets
            raise NotFoundError(f"no ticket {format_ticket_ref(number, t.prefix, t.digits)}")
        return ticket

    async def tags(self, ticket: Ticket) -> list[str]:
        rows = await self.session.execute(
            select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id).order_by(TicketTag.tag)
        )
        return list(rows.scalars())

    async def watchers(self, ticket: Ticket) -> list[Contact]:
        rows = await self.session.execute(
            select(Watcher).where(Watcher.ticket_id == ticket.id).order_by(Watcher.contact_id)
        )
        return [w.contact for w in rows.unique().scalars()]

    # -- creation ---------------------------------------------------------------------

    async def open_ticket(
        self,
        *,
        requester: Contact,
        subject: str,
        text: str,
        actor: Actor,
        channel: str = "email",
        queue: str = "",
        category: str | None = None,
        priority: str | None = None,
        full_text: str | None = None,
        html: str | None = None,
        message_id: str | None = None,
        spool_id: int | None = None,
        attachments: Sequence[NewAttachment] = (),
        watchers: Sequence[Contact] = (),
        followup_of: Ticket | None = None,
        author_agent: Agent | None = None,
    ) -> tuple[Ticket, Message]:
        """Create a ticket with its first public message; the number is taken last-moment."""
        now = self.clock()
        ticket = Ticket(**self.new_ticket_values(
            number=await next_number(self.session), requester_id=requester.id,
            organization_id=requester.organization_id, subject=subject, channel=channel,
            queue=queue, category=category, priority=priority,
            followup_of_id=followup_of.id if followup_of else None, at=now))
        ticket.requester = requester
        ticket.organization = requester.organization
        ticket.assignee = None
        self.session.add(ticket)
        await self.session.flush()
        audit.record(self.session, ticket_id=ticket.id, actor=actor, action=Change.CREATED,
                     at=now, after=self.snapshot(ticket),
                     reason=f"follow-up of {self.reference(followup_of)}" if followup_of else "")
        for contact in watchers:
            if contact.id != requester.id:
                await self._add_watcher(ticket, contact, actor, source="cc", notify=False)
        message = await self._add_message(
            ticket, kind="public", text=text, actor=actor,
            author_contact=None if author_agent else requester, author_agent=author_agent,
            via=channel, subject=subject, full_text=full_text, html=html,
            message_id=message_id, spool_id=spool_id, attachments=attachments, at=now,
        )
        await self._emit(TicketEvent(Change.CREATED, ticket, actor, after=self.snapshot(ticket),
                                     message=message))
        return ticket, message

    # -- messages ---------------------------------------------------------------------

    async def add_message(
        self,
        ticket: Ticket,
        *,
        kind: str,
        text: str,
        actor: Actor,
        author_contact: Contact | None = None,
        author_agent: Agent | None = None,
        via: str = "email",
        subject: str = "",
        full_text: str | None = None,
        html: str | None = None,
        message_id: str | None = None,
        spool_id: int | None = None,
        attachments: Sequence[NewAttachment] = (),
    ) -> Message:
        """Add a public reply, internal note or system message.

        A requester-side public message on a paused or resolved ticket moves it back to
        the first active status (Open); the first public agent message is the first response.
        """
        if kind not in ("public", "internal", "system"):
            raise UnknownValueError(f"unknown message kind '{kind}'")
        now = self.clock()
        message = await self._add_message(
            ticket, kind=kind, text=text, actor=actor, author_contact=author_contact,
            author_agent=author_agent, via=via, subject=subject, full_text=full_text, html=html,
            message_id=message_id, spool_id=spool_id, attachments=attachments, at=now,
        )
        ticket.updated_at = now
        if kind == "public" and author_agent is not None and ticket.first_response_at is None:
            ticket.first_response_at = now
            ticket.sla_next_at = now
        action = Change.of_message(kind)
        await self._emit(TicketEvent(action, ticket, actor, message=message))
        if (kind == "public" and author_agent is None
                and self.status_class(ticket.status) in ("paused", "resolved")):
            await self.set_status(ticket, self.settings.tickets.statuses[0].name, actor,
                                  reason="requester replied")
        return message

    async def _add_message(self, ticket: Ticket, *, kind: str, text: str, actor: Actor,
                           author_contact: Contact | None, author_agent: Agent | None,
                           via: str, subject: str, full_text: str | None, html: str | None,
                           message_id: str | None, spool_id: int | None,
                           attachments: Sequence[NewAttachment], at: datetime) -> Message:
        message = Message(**message_values(
            ticket_id=ticket.id, kind=kind,
            author_contact_id=author_contact.id if author_contact else None,
            author_agent_id=author_agent.id if author_agent else None, via=via,
            message_id=message_id, subject=subject, text=text, full_text=full_text, html=html,
            spool_id=spool_id, at=at))
        message.author_contact = author_contact
        message.author_agent = author_agent
        message.attachments = [Attachment(**row) for row in attachment_values(attachments)]
        self.session.add(message)
        if message_id:
            self.session.add(MessageRef(message_id=message_id, ticket_id=ticket.id, direction="in"))
        await self.session.flush()
        audit.record(self.session, ticket_id=ticket.id, actor=actor, action=Change.of_message(kind),
                     at=at, after={"message": message.id, "attachments": len(attachments)})
        return message

    # -- field changes ----------------------------------------------------------------

    async def set_status(self, ticket: Ticket, status: str, actor: Actor, *,
                         reason: str = "") -> bool:
        new = self.canonical_status(status)
        if new == ticket.status:
            return False
        now = self.clock()
        old = ticket.status
        ticket.status = new
        cls = self.status_class(new)
        if cls == "resolved":
            ticket.resolved_at = now
        elif cls == "closed":
            ticket.closed_at = now
            ticket.resolved_at = ticket.resolved_at or now
        else:
            ticket.resolved_at = None
            ticket.closed_at = None
        await self._changed(ticket, actor, "status", old, new, now, reason)
        return True

    async def set_priority(self, ticket: Ticket, priority: str, actor: Actor) -> bool:
        return await self._set_field(ticket, "priority", self.canonical_priority(priority), actor)

    async def set_category(self, ticket: Ticket, category: str, actor: Actor) -> bool:
        return await self._set_field(ticket, "category", self.canonical_category(category), actor)

    async def set_channel(self, ticket: Ticket, channel: str, actor: Actor) -> bool:
        return await self._set_field(ticket, "channel", self.canonical_channel(channel), actor)

    async def set_due(self, ticket: Ticket, due: datetime | None, actor: Actor) -> bool:
        if due is not None and due.tzinfo is None:
            raise ValueError("due date must be timezone-aware")
        return await self._set_field(ticket, "due_at", due, actor)

    async def set_subject(self, ticket: Ticket, subject: str, actor: Actor) -> bool:
        return await self._set_field(ticket, "subject", " ".join(subject.split()), actor)

    async def _set_field(self, ticket: Ticket, name: str, value: Any, actor: Actor) -> bool:
        old = getattr(ticket, name)
        if old == value:
            return False
        setattr(ticket, name, value)
        await self._changed(ticket, actor, name, old, value, self.clock())
        return True

    async def _changed(self, ticket: Ticket, actor: Actor, name: str, old: Any, new: Any,
                       now: datetime, reason: str = "") -> None:
        ticket.updated_at = now
        if name in ("status", "priority", "category"):
            ticket.sla_next_at = now
        before, after = {name: _jsonable(old)}, {name: _jsonable(new)}
        change = Change.of_field(name)
        audit.record(self.session, ticket_id=ticket.id, actor=actor, action=change,
                     at=now, before=before, after=after, reason=reason)
        await self._emit(TicketEvent(change, ticket, actor, before, after))

    async def assign(self, ticket: Ticket, agent: Agent | None, actor: Actor) -> bool:
        if ticket.assignee_id == (agent.id if agent else None):
            return False
        old = ticket.assignee.email if ticket.assignee else None
        ticket.assignee_id = agent.id if agent else None
        ticket.assignee = agent
        await self._changed(ticket, actor, "assignee", old, agent.email if agent else None,
                            self.clock())
        return True

    async def add_tags(self, ticket: Ticket, tags: Sequence[str], actor: Actor) -> list[str]:
        current = set(await self.tags(ticket))
        added = sorted({t.strip().lower() for t in tags if t.strip()} - current)
        for tag in added:
            self.session.add(TicketTag(ticket_id=ticket.id, tag=tag))
        if added:
            await self.session.flush()
            await self._changed(ticket, actor, "tags", sorted(current),
                                sorted(current | set(added)), self.clock())
        return added

    async def remove_tags(self, ticket: Ticket, tags: Sequence[str], actor: Actor) -> list[str]:
        current = set(await self.tags(ticket))
        removed = sorted({t.strip().lower() for t in tags} & current)
        if removed:
            await self.session.execute(delete(TicketTag).where(
                TicketTag.ticket_id == ticket.id, TicketTag.tag.in_(removed)))
            await self._changed(ticket, actor, "tags", sorted(current),
                                sorted(current - set(removed)), self.clock())
        return removed

    async def add_watcher(self, ticket: Ticket, contact: Contact, actor: Actor) -> bool:
        return await self._add_watcher(ticket, contact, actor, source="added", notify=True)

    async def _add_watcher(self, ticket: Ticket, contact: Contact, actor: Actor, *,
                           source: str, notify: bool) -> bool:
        exists = await self.session.get(Watcher, (ticket.id, contact.id))
        if exists is not None or contact.id == ticket.requester_id:
            return False
        self.session.add(Watcher(ticket_id=ticket.id, contact_id=contact.id, source=source))
        await self.session.flush()
        now = self.clock()
        audit.record(self.session, ticket_id=ticket.id, actor=actor, action=Change.WATCHER_ADDED,
                     at=now, after={"watcher": contact.email, "source": source})
        if notify:
            await self._emit(TicketEvent(Change.WATCHER_ADDED, ticket, actor,
                                         after={"watcher": contact.email}))
        return True

    async def remove_watcher(self, ticket: Ticket, contact: Contact, actor: Actor) -> bool:
        exists = await self.session.get(Watcher, (ticket.id, contact.id))
        if exists is None:
            return False
        await self.session.delete(exists)
        audit.record(self.session, ticket_id=ticket.id, actor=actor,
                     action=Change.WATCHER_REMOVED, at=self.clock(),
                     before={"watcher": contact.email})
        return True

    # -- internals --------------------------------------------------------------------

    def snapshot(self, ticket: Any) -> dict[str, Any]:
        return {
            "number": self.reference(ticket), "subject": ticket.subject, "status": ticket.status,
            "priority": ticket.priority, "category": ticket.category, "channel": ticket.channel,
            "queue": ticket.queue,
        }

    async def _emit(self, event: TicketEvent) -> None:
        for listener in self.listeners:
            await listener(event)


def message_values(*, ticket_id: int, kind: str, author_contact_id: int | None,
                   author_agent_id: int | None, via: str, message_id: str | None, subject: str,
                   text: str, full_text: str | None, html: str | None, spool_id: int | None,
                   at: datetime) -> dict[str, Any]:
    """The columns of a message row (the full text defaults to the visible text)."""
    return {"ticket_id": ticket_id, "kind": kind, "author_contact_id": author_contact_id,
            "author_agent_id": author_agent_id, "via": via, "message_id": message_id,
            "subject": subject, "text": text,
            "full_text": full_text if full_text is not None else text, "html": html,
            "spool_id": spool_id, "created_at": at}


def attachment_values(attachments: Sequence[NewAttachment]) -> list[dict[str, Any]]:
    """Attachment columns but the message id, which the caller's insert supplies."""
    return [{"filename": a.filename, "content_type": a.content_type,
             "size": a.size, "sha256": a.sha256, "is_inline": a.is_inline,
             "content_id": a.content_id} for a in attachments]


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
