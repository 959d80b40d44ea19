"""The ticket service: the one writer of tickets and everything about them.

Each method works inside the caller's session and transaction. Every change it makes
becomes one typed event (`helpdesk.events`): the event's audit rows and the registered
listeners (notifications -> outbox rows, and whatever a deployment adds) run inside the
same transaction, so a change, its history and the mail that announces it commit or roll
back together. Any change that can move an SLA clock (status, priority, category, first
response) sets the ticket's ``sla_next_at`` to now, which hands the ticket to the SLA
daemon's next tick.

Tickets and messages are written with prebuilt Core statements (`create`, `reply`) and
the rows nothing reads back in the transaction go through the `Tx` row buffer, so the
gateway's hot path is this code, not a copy of it. Callers that hold ORM objects (agent
commands, the portal, the CLI) use `open_ticket` and `add_message`, which write the same
rows and emit the same events and return the ORM objects.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import audit
from helpdesk.audit import Actor
from helpdesk.config import Settings, find_name
from helpdesk.direct import run
from helpdesk.errors import DomainError, NotFoundError, UnknownValueError
from helpdesk.events import (
    Assigned,
    CategoryChanged,
    Closed,
    CsatRated,
    Deleted,
    FieldChanged,
    Linked,
    LinksRevoked,
    Listener,
    Merged,
    MessageAdded,
    MessageFacts,
    PriorityChanged,
    Reopened,
    Resolved,
    Restored,
    StatusChanged,
    TagsChanged,
    TicketCreated,
    TicketEvent,
    TicketFacts,
    TimeLogged,
    TypeChanged,
    Unlinked,
    WatcherAdded,
    WatcherRemoved,
    audit_values,
)
from helpdesk.history import Change
from helpdesk.models import (
    Agent,
    Attachment,
    AuditEvent,
    Contact,
    CsatRating,
    Message,
    MessageRef,
    Organization,
    Ticket,
    TicketLink,
    TicketTag,
    TimeEntry,
    Watcher,
    utcnow,
)
from helpdesk.numbering import next_number
from helpdesk.refs import format_ticket_ref
from helpdesk.relations import TICKET_KINDS, URL_KINDS, inverse
from helpdesk.search import index_message, index_ticket
from helpdesk.tx import TOUCH, Tx

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime

Clock = Callable[[], datetime]
DRAFT = "draft"
"""The kind of an agent's reply held back by the collision guard: on the ticket, seen by
agents, never by the requester, until sent (`send_draft`) or discarded."""

_NEW_TICKET = insert(Ticket).returning(Ticket.id)
_NEW_MESSAGE = insert(Message).returning(Message.id)
_TICKET_FACTS = select(Ticket.id, Ticket.number, Ticket.queue, Ticket.status, Ticket.priority,
                       Ticket.category, Ticket.requester_id, Ticket.assignee_id,
                       Ticket.subject, Ticket.channel, Ticket.type, Ticket.merged_into_id,
                       Ticket.deleted_at)
TICKET_BY_NUMBER = _TICKET_FACTS.where(Ticket.number == bindparam("number"))
TICKET_BY_ID = _TICKET_FACTS.where(Ticket.id == bindparam("ticket"))
_ASSIGN = update(Ticket).where(Ticket.id == bindparam("ticket")).values(
    assignee_id=bindparam("agent"), updated_at=bindparam("at"))
_AGENT_EMAIL = select(Agent.email).where(Agent.id == bindparam("agent"))
_FOLLOWED_UP = (select(Ticket.category, Ticket.type, Ticket.priority, Ticket.organization_id,
                       Ticket.assignee_id, Agent.email.label("agent_email"),
                       Agent.is_active.label("agent_active"))
                .outerjoin(Agent, Agent.id == Ticket.assignee_id)
                .where(Ticket.id == bindparam("ticket")))
_FIELD_EVENTS: dict[str, type[FieldChanged]] = {
    "status": StatusChanged, "priority": PriorityChanged, "category": CategoryChanged,
    "assignee": Assigned, "tags": TagsChanged, "type": TypeChanged}


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
class Created:
    """A new ticket and its first message, as `create` wrote them."""

    ticket: TicketFacts
    message: MessageFacts


class TicketService:
    """Ticket operations bound to one session (one transaction's worth of work)."""

    def __init__(self, session: AsyncSession, settings: Settings, *, clock: Clock = utcnow,
                 listeners: Sequence[Listener] = ()) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.listeners = tuple(listeners)
        self.tx = Tx(session)

    @classmethod
    def for_runtime(cls, session: AsyncSession, rt: Runtime) -> TicketService:
        """The service with the process's clock and the listeners registered at start-up."""
        return cls(session, rt.settings, clock=rt.clock, listeners=rt.listeners)

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
        found = find_name(value, known)
        if found is None:
            raise UnknownValueError(f"unknown {kind} '{value}' (known: {', '.join(known)})")
        return found

    def canonical_priority(self, name: str) -> str:
        return self._pick("priority", name, self.settings.tickets.priorities)

    def canonical_category(self, name: str) -> str:
        return self._pick("category", name, self.settings.tickets.categories)

    def canonical_channel(self, name: str) -> str:
        return self._pick("channel", name, self.settings.tickets.channels)

    def canonical_type(self, name: str) -> str:
        return self._pick("type", name.replace("_", " "),
                          [t.name for t in self.settings.tickets.types])

    def reference(self, ticket: Any) -> str:
        """``TKT-000042`` for anything with a ``number`` (ORM ticket, facts, a row)."""
        t = self.settings.tickets
        return format_ticket_ref(ticket.number, t.prefix, t.digits)

    def new_ticket_values(self, *, number: int, requester_id: int,
                          organization_id: int | None, subject: str, channel: str, queue: str,
                          category: str | None, priority: str | None,
                          followup_of_id: int | None, at: datetime,
                          type: str | None = None) -> dict[str, Any]:
        """The columns of a new ticket: what `create` inserts."""
        t = self.settings.tickets
        return {
            "number": number, "subject": " ".join(subject.split()) or "(no subject)",
            "status": t.statuses[0].name,
            "priority": self.canonical_priority(priority or t.default_priority),
            "category": self.canonical_category(category or t.categories[0]),
            "type": self.canonical_type(type or t.default_type),
            "channel": self.canonical_channel(channel), "queue": queue,
            "requester_id": requester_id, "organization_id": organization_id,
            "link_secret": secrets.token_hex(16), "followup_of_id": followup_of_id,
            "sla_next_at": at, "created_at": at, "updated_at": at,
        }

    # -- lookups ----------------------------------------------------------------------

    async def get(self, number: int, *, for_update: bool = False) -> Ticket:
        await self.tx.flush()  # the ORM reads what buffered rows would change
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

    async def create(self, *, requester: Any, subject: str, text: str, actor: Actor,
                     channel: str = "email", queue: str = "", category: str | None = None,
                     priority: str | None = None, full_text: str | None = None,
                     html: str | None = None, message_id: str | None = None,
                     spool_id: int | None = None, attachments: Sequence[NewAttachment] = (),
                     watchers: Sequence[Any] = (), followup_of: Any = None,
                     author_agent_id: int | None = None, reason: str = "",
                     type: str | None = None, acknowledge: str = "") -> Created:
        """Create a ticket with its first public message; the number is taken last-moment.

        ``requester``, ``watchers`` and ``followup_of`` may be ORM objects or Core rows
        (id, organization_id; email for watchers; number for the ticket followed up).
        ``reason``: why the mail made a new ticket, kept in its history. A follow-up is
        linked to the ticket it follows up and takes over what ``[tickets]
        followup_inherits`` names of it. ``acknowledge``: the template of the
        acknowledgement the requester is due, carried by `TicketCreated`.
        """
        now = self.clock()
        values = self.new_ticket_values(
            number=await next_number(self.session), requester_id=requester.id,
            organization_id=requester.organization_id, subject=subject, channel=channel,
            queue=queue, category=category, priority=priority, type=type,
            followup_of_id=followup_of.id if followup_of is not None else None, at=now)
        conn = await self.tx.connection()
        inherited_agent = None
        if followup_of is not None:
            inherited_agent = await self._inherit(conn, followup_of.id, values)
        ticket_id = (await run(conn, _NEW_TICKET, values)).scalar_one()
        await index_ticket(self.tx, ticket_id, values["subject"])
        ticket = TicketFacts(ticket_id, values["number"], queue, values["status"],
                             values["priority"], values["category"], requester.id,
                             values.get("assignee_id"), values["subject"], values["channel"],
                             values["type"])
        message = await self._insert_message(
            ticket, kind="public",
            author_contact_id=None if author_agent_id else requester.id,
            author_agent_id=author_agent_id, via=channel, subject=subject, text=text,
            full_text=full_text, html=html, message_id=message_id, spool_id=spool_id,
            attachments=attachments, at=now)
        snapshot = self.snapshot(ticket)
        await self._emit(TicketCreated(ticket, actor, now, message=message, snapshot=snapshot,
                                       reason=f"follow-up of {self.reference(followup_of)}"
                                       if followup_of is not None else "",
                                       requester_email=requester.email,
                                       organization_id=values["organization_id"], body=text,
                                       acknowledge=acknowledge,
                                       requester_undeliverable=bool(
                                           requester.is_undeliverable)))
        if followup_of is not None:
            await self._link_row(ticket, "followup", actor, now, other=followup_of)
            if inherited_agent is not None:
                await self._emit(Assigned(ticket, actor, now, name="assignee", before=None,
                                          after=inherited_agent,
                                          reason=f"as on {self.reference(followup_of)}"))
        for contact in watchers:
            if contact.id != requester.id:
                await self._add_watcher(ticket, contact, actor, source="cc")
        if reason:
            await self.tx.add(AuditEvent, audit_row(ticket.id, reason, now))
        return Created(ticket, message)

    async def open_ticket(self, *, requester: Contact, subject: str, text: str, actor: Actor,
                          channel: str = "email", queue: str = "", category: str | None = None,
                          priority: str | None = None, full_text: str | None = None,
                          html: str | None = None, message_id: str | None = None,
                          spool_id: int | None = None,
                          attachments: Sequence[NewAttachment] = (),
                          watchers: Sequence[Contact] = (), followup_of: Ticket | None = None,
                          author_agent: Agent | None = None) -> tuple[Ticket, Message]:
        """`create`, for callers that go on with the ORM objects."""
        created = await self.create(
            requester=requester, subject=subject, text=text, actor=actor, channel=channel,
            queue=queue, category=category, priority=priority, full_text=full_text, html=html,
            message_id=message_id, spool_id=spool_id, attachments=attachments,
            watchers=watchers, followup_of=followup_of,
            author_agent_id=author_agent.id if author_agent else None)
        await self.tx.flush()
        ticket = await self.session.get(Ticket, created.ticket.id)
        message = await self.session.get(Message, created.message.id)
        assert ticket is not None and message is not None
        return ticket, message

    async def _inherit(self, conn: Any, old_id: int, values: dict[str, Any]) -> str | None:
        """Take over from ticket ``old_id`` what the follow-up settings name; returns the
        inherited assignee's address (an active agent's only), else None."""
        inherits = set(self.settings.tickets.followup_inherits)
        old = (await run(conn, _FOLLOWED_UP, {"ticket": old_id})).one()
        for name in ("category", "type", "priority"):
            if name in inherits:
                values[name] = getattr(old, name)
        if "organization" in inherits and old.organization_id is not None:
            values["organization_id"] = old.organization_id
        if "assignee" in inherits and old.assignee_id is not None and old.agent_active:
            values["assignee_id"] = old.assignee_id
            return str(old.agent_email)
        return None

    # -- messages ---------------------------------------------------------------------

    async def add_message(self, ticket: Ticket, *, kind: str, text: str, actor: Actor,
                          author_contact: Contact | None = None,
                          author_agent: Agent | None = None, via: str = "email",
                          subject: str = "", full_text: str | None = None,
                          html: str | None = None, message_id: str | None = None,
                          spool_id: int | None = None,
                          attachments: Sequence[NewAttachment] = ()) -> Message:
        """`reply` on an ORM ticket, returning the ORM message."""
        facts = await self.reply(
            ticket, kind=kind, text=text, actor=actor,
            author_contact_id=author_contact.id if author_contact else None,
            author_agent_id=author_agent.id if author_agent else None, via=via,
            subject=subject, full_text=full_text, html=html, message_id=message_id,
            spool_id=spool_id, attachments=attachments)
        await self.tx.flush()
        message = await self.session.get(Message, facts.id)
        assert message is not None
        return message

    async def reply(self, ticket: Ticket | TicketFacts, *, kind: str, text: str, actor: Actor,
                    author_contact_id: int | None = None, author_agent_id: int | None = None,
                    via: str = "email", subject: str = "", full_text: str | None = None,
                    html: str | None = None, message_id: str | None = None,
                    spool_id: int | None = None,
                    attachments: Sequence[NewAttachment] = ()) -> MessageFacts:
        """Add a public reply, internal note or system message to ``ticket``.

        A requester-side public message on a paused or resolved ticket moves it back to
        the first active status (Open); the first public agent message is the first
        response. ``ticket`` may be the ORM object or `TicketFacts` (the gateway's).
        """
        if kind not in ("public", "internal", "system", DRAFT):
            raise UnknownValueError(f"unknown message kind '{kind}'")
        now = self.clock()
        facts = ticket if isinstance(ticket, TicketFacts) else TicketFacts.of(ticket)
        message = await self._insert_message(
            facts, kind=kind, author_contact_id=author_contact_id,
            author_agent_id=author_agent_id, via=via, subject=subject, text=text,
            full_text=full_text, html=html, message_id=message_id, spool_id=spool_id,
            attachments=attachments, at=now)
        await self._announce(ticket, facts, message, actor, now)
        return message

    async def _announce(self, ticket: Ticket | TicketFacts, facts: TicketFacts,
                        message: MessageFacts, actor: Actor, now: datetime) -> None:
        """What a message just added (or a draft just sent) does to its ticket: the first
        public agent message is the first response; a requester-side public message on
        a paused or resolved ticket moves it back to the first status (Open)."""
        kind, author_agent_id = message.kind, message.author_agent_id
        first_response = kind == "public" and author_agent_id is not None
        if isinstance(ticket, Ticket):
            ticket.updated_at = now
            if first_response and ticket.first_response_at is None:
                ticket.first_response_at = now
                ticket.sla_next_at = now
        elif first_response:
            orm = await self._orm(facts)
            if orm.first_response_at is None:
                orm.first_response_at = orm.sla_next_at = now
            orm.updated_at = now
        else:
            await self.tx.later(TOUCH, {"ticket": facts.id, "at": now})
            await self._expire(facts.id)
        await self._emit(MessageAdded(facts, actor, now, message=message))
        if (kind == "public" and author_agent_id is None
                and self.status_class(facts.status) in ("paused", "resolved")):
            orm_ticket = ticket if isinstance(ticket, Ticket) else await self._orm(facts)
            await self.set_status(orm_ticket, self.settings.tickets.statuses[0].name, actor,
                                  reason="requester replied")

    async def send_draft(self, ticket: Ticket, draft: Message, actor: Actor) -> None:
        """Send a held reply (`DRAFT`): it becomes the public reply it was written as, and
        is relayed and counted as if it had just arrived."""
        if draft.kind != DRAFT or draft.ticket_id != ticket.id:
            raise DomainError("that message is not a held reply of this ticket")
        draft.kind = "public"
        await self.session.flush()
        message = MessageFacts(draft.id, "public", draft.author_contact_id,
                               draft.author_agent_id, draft.message_id,
                               len(draft.attachments))
        await self._announce(ticket, TicketFacts.of(ticket), message, actor, self.clock())

    async def discard_draft(self, ticket: Ticket, draft: Message, actor: Actor) -> None:
        """Drop a held reply: it is kept as an internal note (nothing typed is lost) and
        never sent."""
        if draft.kind != DRAFT or draft.ticket_id != ticket.id:
            raise DomainError("that message is not a held reply of this ticket")
        draft.kind = "internal"
        now = self.clock()
        ticket.updated_at = now
        await self.session.flush()
        message = MessageFacts(draft.id, "internal", draft.author_contact_id,
                               draft.author_agent_id, draft.message_id,
                               len(draft.attachments))
        await self._emit(MessageAdded(TicketFacts.of(ticket), actor, now, message=message))

    async def _insert_message(self, ticket: TicketFacts, *, kind: str,
                              author_contact_id: int | None, author_agent_id: int | None,
                              via: str, subject: str, text: str, full_text: str | None,
                              html: str | None, message_id: str | None, spool_id: int | None,
                              attachments: Sequence[NewAttachment], at: datetime
                              ) -> MessageFacts:
        conn = await self.tx.connection()
        pk: int = (await run(conn, _NEW_MESSAGE, message_values(
            ticket_id=ticket.id, kind=kind, author_contact_id=author_contact_id,
            author_agent_id=author_agent_id, via=via, message_id=message_id, subject=subject,
            text=text, full_text=full_text, html=html, spool_id=spool_id,
            at=at))).scalar_one()
        await index_message(self.tx, pk, text)
        if attachments:
            await self.tx.add(Attachment, [{"message_id": pk, **row}
                                           for row in attachment_values(attachments)])
        if message_id:
            await self.tx.add(MessageRef, {"message_id": message_id, "ticket_id": ticket.id,
                                           "direction": "in"})
        return MessageFacts(pk, kind, author_contact_id, author_agent_id, message_id,
                            len(attachments))

    async def _orm(self, facts: TicketFacts) -> Ticket:
        await self.tx.flush()
        ticket = await self.session.get(Ticket, facts.id)
        assert ticket is not None
        return ticket

    async def _expire(self, ticket_id: int, *names: str) -> None:
        """An ORM copy of a ticket whose row changed by Core reads it again when used."""
        stale = self.session.identity_map.get(AsyncSession.identity_key(Ticket, ticket_id))
        if stale is not None:
            if stale in self.session.dirty:
                await self.session.flush()  # its pending changes are kept, not thrown away
            self.session.expire(stale, ["updated_at", *names])

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

    async def set_type(self, ticket: Ticket, type: str, actor: Actor) -> bool:
        return await self._set_field(ticket, "type", self.canonical_type(type), actor)

    async def set_organization(self, ticket: Ticket, organization: Organization | None,
                               actor: Actor) -> bool:
        """Move ``ticket`` to ``organization`` (an admin joined two of them); the history
        keeps the names."""
        if ticket.organization_id == (organization.id if organization else None):
            return False
        old = ticket.organization.name if ticket.organization else None
        ticket.organization_id = organization.id if organization else None
        ticket.organization = organization
        await self._changed(ticket, actor, "organization", old,
                            organization.name if organization else None, self.clock())
        return True

    async def set_channel(self, ticket: Ticket, channel: str, actor: Actor) -> bool:
        return await self._set_field(ticket, "channel", self.canonical_channel(channel), actor)

    async def set_due(self, ticket: Ticket, due: datetime | None, actor: Actor) -> bool:
        if due is not None and due.tzinfo is None:
            raise ValueError("due date must be timezone-aware")
        return await self._set_field(ticket, "due_at", due, actor)

    async def set_subject(self, ticket: Ticket, subject: str, actor: Actor) -> bool:
        # the rename's trigger takes the old subject out of the search index: it must be in
        await self.tx.flush()
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
        event_type = _FIELD_EVENTS.get(name, FieldChanged)
        facts = TicketFacts.of(ticket)
        await self._emit(event_type(facts, actor, now, name=name, before=old, after=new,
                                    reason=reason))
        if name == "status":
            was, cls = self.status_class(old), self.status_class(new)
            if cls != was and cls in ("resolved", "closed"):
                await self._emit((Resolved if cls == "resolved" else Closed)(facts, actor, now))
            elif was in ("resolved", "closed") and cls not in ("resolved", "closed"):
                await self._emit(Reopened(facts, actor, now))

    async def assign(self, ticket: Ticket | TicketFacts, agent: Any, actor: Actor) -> bool:
        """Give ``ticket`` to ``agent`` (an ORM agent or a row with id and email; None:
        unassign). ``ticket`` may be `TicketFacts`: one Core update, no ORM load."""
        if ticket.assignee_id == (agent.id if agent else None):
            return False
        if isinstance(ticket, TicketFacts):
            await self._assign_row(ticket, agent, actor)
            return True
        old = ticket.assignee.email if ticket.assignee else None
        ticket.assignee_id = agent.id if agent else None
        ticket.assignee = agent
        await self._changed(ticket, actor, "assignee", old, agent.email if agent else None,
                            self.clock())
        return True

    async def _assign_row(self, ticket: TicketFacts, agent: Any, actor: Actor) -> None:
        conn = await self.tx.connection()
        old = None
        if ticket.assignee_id is not None:
            old = (await run(conn, _AGENT_EMAIL, {"agent": ticket.assignee_id})).scalar()
        now = self.clock()
        await run(conn, _ASSIGN, {"ticket": ticket.id, "agent": agent.id if agent else None,
                                  "at": now})
        await self._expire(ticket.id, "assignee_id", "assignee")
        facts = dataclasses.replace(ticket, assignee_id=agent.id if agent else None)
        await self._emit(Assigned(facts, actor, now, name="assignee", before=old,
                                  after=agent.email if agent else None))

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
        return await self._add_watcher(TicketFacts.of(ticket), contact, actor, source="added")

    async def _add_watcher(self, ticket: TicketFacts, contact: Any, actor: Actor, *,
                           source: str) -> bool:
        exists = await self.session.get(Watcher, (ticket.id, contact.id))
        if exists is not None or contact.id == ticket.requester_id:
            return False
        self.session.add(Watcher(ticket_id=ticket.id, contact_id=contact.id, source=source))
        await self.session.flush()
        await self._emit(WatcherAdded(ticket, actor, self.clock(), email=contact.email,
                                      source=source))
        return True

    async def remove_watcher(self, ticket: Ticket, contact: Contact, actor: Actor) -> bool:
        exists = await self.session.get(Watcher, (ticket.id, contact.id))
        if exists is None:
            return False
        await self.session.delete(exists)
        await self._emit(WatcherRemoved(TicketFacts.of(ticket), actor, self.clock(),
                                        email=contact.email))
        return True

    async def rename_status(self, old: str, new: str, actor: Actor) -> int:
        """Tickets in status ``old`` are now in ``new`` (the admin renamed it): the same
        status under another name, so no ticket changes state and no event fires; the
        rename is one entry of the desk's history. Returns how many tickets it holds."""
        await self.tx.flush()
        now = self.clock()
        result = await self.session.execute(
            update(Ticket).where(Ticket.status == old).values(status=new)
            .execution_options(synchronize_session="fetch"))
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        await self.tx.add(AuditEvent, audit.values(
            ticket_id=None, actor=actor, action=Change.STATUS_RENAMED, at=now,
            before={"status": old}, after={"status": new, "tickets": count}))
        return count

    # -- the trash ------------------------------------------------------------------

    async def delete(self, ticket: Ticket, actor: Actor) -> bool:
        """Move ``ticket`` to the trash; its SLA clocks stop being looked at."""
        if ticket.deleted_at is not None:
            return False
        now = self.clock()
        ticket.deleted_at, ticket.sla_next_at, ticket.updated_at = now, None, now
        await self._emit(Deleted(TicketFacts.of(ticket), actor, now))
        return True

    async def restore(self, ticket: Ticket, actor: Actor) -> bool:
        """Take ``ticket`` out of the trash, as it was."""
        if ticket.deleted_at is None:
            return False
        now = self.clock()
        ticket.deleted_at, ticket.sla_next_at, ticket.updated_at = None, now, now
        await self._emit(Restored(TicketFacts.of(ticket), actor, now))
        return True

    async def purge(self, ticket: Ticket, actor: Actor) -> None:
        """Remove a ticket in the trash and everything that is only its.

        Its raw mail stays in the spool (unlinked): the spool's dedupe keys must still
        know the mail, or a resent copy would make the ticket again. Attachment bytes stay
        in the blob store, which is shared by content. One audit row, with no ticket,
        records the purge.
        """
        from helpdesk.models import (
            InboundSpool,
            OutboxRow,
            SlaClock,
        )

        if ticket.deleted_at is None:
            raise DomainError(f"{self.reference(ticket)} is not in the trash")
        await self.tx.flush()
        session, tid = self.session, ticket.id
        messages = select(Message.id).where(Message.ticket_id == tid).scalar_subquery()
        await session.execute(delete(Attachment).where(Attachment.message_id.in_(messages)))
        await session.execute(update(OutboxRow).where(OutboxRow.about_message_id.in_(
            messages)).values(about_message_id=None))
        await session.execute(update(InboundSpool).where(InboundSpool.ticket_id == tid)
                              .values(ticket_id=None))
        await session.execute(update(Ticket).where(Ticket.merged_into_id == tid)
                              .values(merged_into_id=None))
        await session.execute(update(Ticket).where(Ticket.followup_of_id == tid)
                              .values(followup_of_id=None))
        await session.execute(delete(TicketLink).where(
            (TicketLink.ticket_id == tid) | (TicketLink.other_ticket_id == tid)))
        for table in (Message, MessageRef, AuditEvent, OutboxRow, Watcher, TicketTag,
                      SlaClock, CsatRating, TimeEntry):
            await session.execute(delete(table).where(table.ticket_id == tid))
        reference = self.reference(ticket)
        session.expunge(ticket)
        await session.execute(delete(Ticket).where(Ticket.id == tid))
        await self.tx.add(AuditEvent, audit.values(
            ticket_id=None, actor=actor, action=Change.PURGED, at=self.clock(),
            before={"ticket": reference, "subject": ticket.subject}, after=None))

    # -- links between tickets, and to tasks ------------------------------------------

    async def link(self, ticket: Ticket, kind: str, actor: Actor, *,
                   other: Ticket | None = None, url: str = "", title: str = "") -> bool:
        """Link ``ticket`` to ``other`` (related, parent, child) or to ``url`` (task, issue,
        incident); False when that link is already there."""
        if kind in TICKET_KINDS:
            if other is None or url:
                raise DomainError(f"a {kind} link names a ticket")
            if other.id == ticket.id:
                raise DomainError("a ticket cannot be linked to itself")
        elif kind in URL_KINDS:
            if other is not None or not url:
                raise DomainError(f"a {kind} link names a URL")
        else:
            raise UnknownValueError(f"unknown link '{kind}' (known: "
                                    f"{', '.join((*TICKET_KINDS, *URL_KINDS))})")
        if await self._find_link(ticket, kind, other, url) is not None:
            return False
        await self._link_row(TicketFacts.of(ticket), kind, actor, self.clock(), other=other,
                             url=url, title=title)
        return True

    async def unlink(self, ticket: Ticket, kind: str, actor: Actor, *,
                     other: Ticket | None = None, url: str = "") -> None:
        """Remove a link ``link`` added, from either end."""
        found = await self._find_link(ticket, kind, other, url)
        if found is None:
            what = self.reference(other) if other is not None else url
            raise DomainError(f"{self.reference(ticket)} has no {kind} link to {what}")
        row = found
        await self.session.delete(row)
        now = self.clock()
        await self._emit(Unlinked(TicketFacts.of(ticket), actor, now, link=kind,
                                  other=self.reference(other) if other is not None else "",
                                  url=row.url or "", title=row.title))
        if other is not None:
            await self._emit(Unlinked(TicketFacts.of(other), actor, now, link=inverse(kind),
                                      other=self.reference(ticket)))

    async def _find_link(self, ticket: Ticket, kind: str, other: Ticket | None,
                         url: str) -> TicketLink | None:
        await self.tx.flush()
        if other is None:
            row = (await self.session.execute(select(TicketLink).where(
                TicketLink.ticket_id == ticket.id, TicketLink.kind == kind,
                TicketLink.url == url))).scalars().first()
            return row
        for a, b, k in ((ticket, other, kind), (other, ticket, inverse(kind))):
            row = (await self.session.execute(select(TicketLink).where(
                TicketLink.ticket_id == a.id, TicketLink.other_ticket_id == b.id,
                TicketLink.kind == k))).scalars().first()
            if row is not None:
                return row
        return None

    async def _link_row(self, ticket: TicketFacts, kind: str, actor: Actor, now: datetime, *,
                        other: Any = None, url: str = "", title: str = "") -> None:
        await self.tx.add(TicketLink, {
            "ticket_id": ticket.id, "kind": kind,
            "other_ticket_id": other.id if other is not None else None,
            "url": url or None, "title": title, "created_by": str(actor),
            "created_at": now})
        other_ref = self.reference(other) if other is not None else ""
        await self._emit(Linked(ticket, actor, now, link=kind, other=other_ref, url=url,
                                title=title))
        if other is not None:
            await self._emit(Linked(TicketFacts.of(other), actor, now,
                                    link=inverse(kind), other=self.reference(ticket)))

    # -- time, ratings, links, merges -------------------------------------------------

    async def log_time(self, ticket: Ticket, agent: Agent, minutes: int, note: str,
                       actor: Actor) -> TimeEntry:
        """Record time an agent spent on ``ticket``."""
        now = self.clock()
        entry = TimeEntry(ticket_id=ticket.id, agent_id=agent.id, minutes=minutes, note=note,
                          created_at=now)
        self.session.add(entry)
        await self.session.flush()
        await self._emit(TimeLogged(TicketFacts.of(ticket), actor, now, minutes=minutes,
                                    note=note, entry=entry.id))
        return entry

    async def rate(self, ticket: Ticket, contact: Contact, score: int,
                   comment: str) -> CsatRating:
        """The requester's satisfaction rating of ``ticket``: inserted, or updated if rated."""
        now = self.clock()
        rating = (await self.session.execute(select(CsatRating).where(
            CsatRating.ticket_id == ticket.id))).scalar_one_or_none()
        previous = None if rating is None else {"score": rating.score,
                                                 "comment": rating.comment}
        if rating is None:
            rating = CsatRating(ticket_id=ticket.id, contact_id=contact.id, score=score,
                                comment=comment, created_at=now, updated_at=now)
            self.session.add(rating)
        else:
            rating.score, rating.comment = score, comment
            rating.contact_id, rating.updated_at = contact.id, now
        await self.session.flush()
        await self._emit(CsatRated(TicketFacts.of(ticket),
                                   Actor("contact", contact.email, contact.id), now,
                                   score=score, comment=comment, previous=previous))
        return rating

    async def revoke_links(self, ticket: Ticket, actor: Actor, *, reason: str = "") -> None:
        """Give ``ticket`` a fresh link secret: every signed link sent so far stops working."""
        ticket.link_secret = secrets.token_hex(16)
        now = self.clock()
        ticket.updated_at = now
        await self.session.flush()
        await self._emit(LinksRevoked(TicketFacts.of(ticket), actor, now, reason=reason))

    async def merge(self, source: Ticket, target: Ticket, actor: Actor) -> None:
        """Merge ``source`` into ``target``.

        Messages (with their attachments), Message-ID references, time entries and
        watchers move to the target, and the source's requester becomes a watcher of it;
        the source is closed with ``merged_into_id`` set, and both tickets get a system
        message. Mail that later threads onto the source follows ``merged_into_id``.
        """
        await self.tx.flush()
        session, now = self.session, self.clock()
        src_ref, dst_ref = self.reference(source), self.reference(target)
        moved = len(list((await session.execute(
            select(Message.id).where(Message.ticket_id == source.id))).scalars()))
        for table in (Message, MessageRef, TimeEntry):
            await session.execute(update(table).where(table.ticket_id == source.id)
                                  .values(ticket_id=target.id))
        people = [source.requester, *await self.watchers(source)]
        for watcher in list((await session.execute(
                select(Watcher).where(Watcher.ticket_id == source.id))).unique().scalars()):
            await session.delete(watcher)
        await session.flush()
        for contact in people:
            await self.add_watcher(target, contact, actor)
        source.merged_into_id = target.id
        await self._emit(Merged(TicketFacts.of(source), actor, now,
                                into=TicketFacts.of(target), source_ref=src_ref,
                                into_ref=dst_ref, moved_messages=moved))
        await self.add_message(source, kind="system", actor=actor,
                               text=f"Merged into {dst_ref} by {actor.label}.")
        await self.add_message(target, kind="system", actor=actor,
                               text=f"{src_ref} was merged into this ticket by {actor.label}.")
        closed = next((s.name for s in self.settings.tickets.statuses
                       if s.status_class == "closed"), None)
        if closed is not None:
            await self.set_status(source, closed, actor, reason=f"merged into {dst_ref}")

    # -- internals --------------------------------------------------------------------

    def snapshot(self, ticket: Any) -> dict[str, Any]:
        return {
            "number": self.reference(ticket), "subject": ticket.subject, "status": ticket.status,
            "priority": ticket.priority, "category": ticket.category, "type": ticket.type,
            "channel": ticket.channel, "queue": ticket.queue,
        }

    async def emit(self, event: TicketEvent) -> None:
        """Record ``event`` and tell the listeners: for changes made outside this class's
        methods but through it (the SLA daemon's alerts)."""
        await self._emit(event)

    async def _emit(self, event: TicketEvent) -> None:
        rows = audit_values(event)
        if rows:
            await self.tx.add(AuditEvent, rows)
        if self.listeners:
            session = self.session
            if session.new or session.dirty or session.deleted:
                await session.flush()  # listeners read with Core: ORM changes first
            for listener in self.listeners:
                await listener(event, self.tx)


def audit_row(ticket_id: int, reason: str, at: datetime) -> dict[str, Any]:
    """Why the gateway filed a mail where it did (the threading decision), for the history."""
    return audit.values(ticket_id=ticket_id, actor=audit.SYSTEM, action="ticket.threading",
                        at=at, reason=reason)


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
