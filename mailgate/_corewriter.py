"""The gateway's Core writer for the two commonest mails (ingest step 7, "Apply").

Why it exists: on the ORM path (``TicketService`` with the ``Notifier`` listener) the
gateway spends 2.6 times the CPU per mail (``bench/ingest_parts.py``: 4.8 against 1.8 ms
in-process on a 2-core machine), most of it SQLAlchemy's unit of work, identity map and
object loading (``--profile``); the gateway's one event loop is what bounds its rate.
Most mail is one of two cases, and this module writes their rows with prebuilt Core
statements instead, on the same connection and in the same group-commit transaction:

* a **new ticket** from a contact: no thread reference that applies, no CC that becomes
  a watcher, no routing rule that tags or assigns;
* a **participant's reply** to an active ticket (not paused, resolved, closed or merged).

Everything else declines (returns None) before writing anything but the sender's contact
row, which the ORM path would write first in the same way, and goes through
``TicketService``: mail from agents (commands, authentication), follow-ups of closed
tickets, status changes, watchers, tags, assignment, and any listener other than the
notifier. The rows are the ORM path's, column for column and in the same order;
``tests/integration/test_corewriter.py`` runs the same mails through both paths into two
databases and compares every table.

Rows that nothing later in the batch reads (attachments, audit events, message references,
outbox rows, the ticket's ``updated_at`` and the spool row's outcome) are deferred and
inserted with one statement per table when the batch ends (`write_deferred`, the group
commit's ``finish``): that halves the statements per mail. Two reads could miss them and
write them first: threading by a Message-ID that a deferred reference holds, and the
hourly acknowledgement limit of an address that a deferred outbox row is for. Anything
that is not the Core writer (the ORM path, a duplicate's lookup) writes them first too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from helpdesk import audit, outbox
from helpdesk.audit import Actor
from helpdesk.db import CoreRow
from helpdesk.direct import connection, run
from helpdesk.directory import ensure_contact
from helpdesk.history import Change
from helpdesk.models import Agent, Attachment, AuditEvent, Message, MessageRef, OutboxRow, Ticket
from helpdesk.notify import (
    Notifier,
    ack_suppressed_audit,
    ack_values,
    ack_verdict,
    agent_notice_rows,
)
from helpdesk.numbering import next_number
from helpdesk.runtime import Runtime
from helpdesk.tickets import (
    Listener,
    NewAttachment,
    TicketService,
    attachment_values,
    message_values,
)
from mailgate import _spool
from mailgate.classify import Classification
from mailgate.parse import Inbound
from mailgate.routing import cc_watchers, header_recipients, resolve_queue
from mailgate.threading_lookup import lookup_thread

_AGENT_COLUMNS = (Agent.id, Agent.email, Agent.is_active, Agent.notify_new_ticket,
                  Agent.notify_reply)
_AGENTS = select(*_AGENT_COLUMNS).order_by(Agent.id)
_AGENTS_KEY = "corewriter.agents"
_TICKET = select(Ticket.id, Ticket.number, Ticket.status, Ticket.queue, Ticket.assignee_id,
                 Ticket.merged_into_id).where(Ticket.number == bindparam("number"))
_TOUCH = update(Ticket).where(Ticket.id == bindparam("ticket")).values(
    updated_at=bindparam("at"))
_NEW_TICKET = insert(Ticket).returning(Ticket.id)
_NEW_MESSAGE = insert(Message).returning(Message.id)
_ROWS = {table: insert(table) for table in (Attachment, AuditEvent, MessageRef, OutboxRow)}
_DEFERRED = "corewriter.deferred"


class _Deferred:
    """The rows Core-written mails left for the end of the batch, per table in mail order."""

    def __init__(self) -> None:
        self.rows: dict[Any, list[dict[str, Any]]] = {table: [] for table in _ROWS}
        self.touches: list[dict[str, Any]] = []  # tickets' updated_at
        self.finishes: list[dict[str, Any]] = []  # one per mail: the spool row's outcome
        self.message_ids: set[str] = set()  # of deferred message references
        self.mailed: set[str] = set()  # addresses of deferred outbox rows


def _deferred(session: AsyncSession) -> _Deferred:
    deferred = session.info.get(_DEFERRED)
    if deferred is None:
        deferred = session.info[_DEFERRED] = _Deferred()
    return deferred


async def write_deferred(session: AsyncSession) -> None:
    """Insert what Core-written mails deferred: one statement per table.

    Taken out of the session first, so rows that fail to insert are not tried again with
    the next unit (the group commit rolls back whatever held them).
    """
    deferred: _Deferred | None = session.info.pop(_DEFERRED, None)
    if deferred is None or not deferred.finishes:
        return
    conn = await connection(session)
    for table, stmt in _ROWS.items():
        if deferred.rows[table]:
            await run(conn, stmt, deferred.rows[table])
    if deferred.touches:
        await run(conn, _TOUCH, deferred.touches)
    await run(conn, _spool.FINISH, deferred.finishes)


class CoreWriter:
    """Writes new tickets and participants' replies as Core rows, or declines."""

    def __init__(self, rt: Runtime, listeners: Sequence[Listener]) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.usable = all(isinstance(listener, Notifier) for listener in listeners)
        self.notify = bool(listeners)

    async def apply(self, session: AsyncSession, msg: Inbound, verdict: Classification,
                    recipients: Sequence[str], via: str, spool_id: int, now: datetime,
                    attachments: Sequence[NewAttachment]) -> tuple[str, int, str] | None:
        """(disposition, ticket number, reason) once the rows are written; None: declined."""
        s = self.settings
        if not self.usable or msg.sender is None or not msg.sender.email:
            return None
        if session.new or session.dirty or session.deleted:
            await session.flush()  # Core reads below must see what earlier units left pending
        conn = await connection(session)
        sender = await ensure_contact(conn, msg.sender.email, msg.sender.name,
                                      freemail=s.tickets.freemail_domains)
        agents = session.info.get(_AGENTS_KEY)
        if agents is None:  # once per batch: agents change rarely (and SQLite holds the lock)
            agents = session.info[_AGENTS_KEY] = (await run(conn, _AGENTS)).all()
        if any(agent.email == sender.email for agent in agents):
            return None  # agents: authentication, commands, notes
        route = resolve_queue(s, recipients or header_recipients(msg), msg)
        if _deferred(session).message_ids.intersection(msg.in_reply_to, msg.references):
            await write_deferred(session)  # a reply to a mail of this batch
        decision = await lookup_thread(session, self.rt, msg, sender, None, recipients)
        if decision.internal:
            return None  # an answer to a staff-only notice: an internal note
        writer = _Unit(self, conn, session, sender, msg, via, spool_id, now, attachments,
                       agents if self.notify else [])
        if decision.ticket is None:
            if route.tags or route.assignee or cc_watchers(s.smtp, msg, sender.email):
                return None
            number = await writer.new_ticket(route.queue, route.category, route.priority,
                                              route.autoresponder_template,
                                              acknowledge=not verdict.suppress_autoresponse,
                                              reason=decision.reason)
            return "ticket", number, decision.reason
        ticket = (await run(conn, _TICKET, {"number": decision.ticket})).one()
        if (ticket.merged_into_id is not None
                or s.status_class(ticket.status) in ("paused", "resolved", "closed")):
            return None
        await writer.reply(ticket, reason=decision.reason)
        return "reply", ticket.number, decision.reason


class _Unit:
    """The rows of one mail, collected per table and inserted in the ORM path's order."""

    def __init__(self, owner: CoreWriter, conn: AsyncConnection, session: AsyncSession,
                 sender: CoreRow, msg: Inbound, via: str, spool_id: int, now: datetime,
                 attachments: Sequence[NewAttachment], agents: Sequence[CoreRow]) -> None:
        self.rt, self.agents = owner.rt, agents
        self.conn, self.session, self.sender, self.msg = conn, session, sender, msg
        self.via, self.spool_id, self.now, self.attachments = via, spool_id, now, attachments
        self.actor = Actor("contact", sender.email, sender.id)
        self.service = TicketService(session, owner.settings)
        self.rows: dict[Any, list[dict[str, Any]]] = {t: [] for t in _ROWS}
        self.touches: list[dict[str, Any]] = []

    async def new_ticket(self, queue: str, category: str | None, priority: str | None,
                         template: str, *, acknowledge: bool, reason: str) -> int:
        msg, now, sender = self.msg, self.now, self.sender
        values = self.service.new_ticket_values(
            number=await next_number(self.session), requester_id=sender.id,
            organization_id=sender.organization_id, subject=msg.subject, channel="email",
            queue=queue, category=category, priority=priority, followup_of_id=None, at=now)
        ticket_id = (await run(self.conn, _NEW_TICKET, values)).scalar_one()
        ticket = SimpleNamespace(id=ticket_id, **values)
        snapshot = self.service.snapshot(ticket)
        self._audit(ticket_id, self.actor, Change.CREATED, after=snapshot, reason="")
        message = await self._message(ticket_id, msg.text or msg.visible_text, "email", msg.text)
        self._notices(ticket, message, self.agents, "notify_new_ticket", "agent_new_ticket",
                      Change.CREATED, snapshot)
        if sender.email.lower() in _deferred(self.session).mailed:
            await write_deferred(self.session)  # its acknowledgements count to the limit
        send, held = (await ack_verdict(self.rt, self.session, sender.email,
                                        sender.is_undeliverable, now)) if acknowledge \
            else (False, "")  # a limit that holds the ack back is audited, as in the ORM path
        if held:
            self.rows[AuditEvent].append(ack_suppressed_audit(ticket_id, sender.email, held, now))
        if send:
            self._outbox(ack_values(self.rt, to=sender.email, template=template,
                                    ticket_id=ticket_id, number=ticket.number,
                                    message_pk=message, message_id=msg.message_id, at=now))
        if reason:
            self._audit(ticket_id, audit.SYSTEM, "ticket.threading", reason=reason)
        self._write(ticket_id, "ticket", reason)
        return int(ticket.number)

    async def reply(self, ticket: CoreRow, *, reason: str) -> None:
        msg = self.msg
        message = await self._message(ticket.id, msg.visible_text, self.via, msg.text)
        self.touches = [{"ticket": ticket.id, "at": self.now}]
        agents = [a for a in self.agents
                  if ticket.assignee_id is None or a.id == ticket.assignee_id]
        self._notices(ticket, message, agents, "notify_reply", "agent_reply_notice",
                      Change.MESSAGE_PUBLIC, {})
        self._write(ticket.id, "reply", reason)
        stale = self.session.identity_map.get(
            AsyncSession.identity_key(Ticket, ticket.id))
        if stale is not None:
            self.session.expire(stale)

    async def _message(self, ticket_id: int, text: str, via: str, full_text: str) -> int:
        msg = self.msg
        message: int = (await run(self.conn, _NEW_MESSAGE, message_values(
            ticket_id=ticket_id, kind="public", author_contact_id=self.sender.id,
            author_agent_id=None, via=via, message_id=msg.message_id, subject=msg.subject,
            text=text, full_text=full_text, html=msg.html, spool_id=self.spool_id,
            at=self.now))).scalar_one()
        self.rows[Attachment] += [{"message_id": message, **row}
                                  for row in attachment_values(self.attachments)]
        if msg.message_id:
            self.rows[MessageRef].append(
                {"message_id": msg.message_id, "ticket_id": ticket_id, "direction": "in"})
        self._audit(ticket_id, self.actor, Change.MESSAGE_PUBLIC,
                    after={"message": message, "attachments": len(self.attachments)})
        return message

    def _notices(self, ticket: Any, message: int, agents: Sequence[CoreRow], pref: str,
                 template: str, action: str, after: dict[str, Any]) -> None:
        for values in agent_notice_rows(
                self.rt, ticket, agents, pref=pref, template=template, actor_email=None,
                message_pk=message, action=action, before={}, after=after, at=self.now):
            self._outbox(values)

    def _outbox(self, values: dict[str, Any]) -> None:
        self.rows[OutboxRow].append(values)
        ref = outbox.thread_ref(values)
        if ref is not None:
            self.rows[MessageRef].append(ref)

    def _audit(self, ticket_id: int, actor: Actor, action: str, **fields: Any) -> None:
        self.rows[AuditEvent].append(
            audit.values(ticket_id=ticket_id, actor=actor, action=action, at=self.now, **fields))

    def _write(self, ticket_id: int, disposition: str, reason: str) -> None:
        """Leave the mail's remaining rows for the end of the batch, all of them at once."""
        deferred = _deferred(self.session)
        for table, rows in self.rows.items():
            deferred.rows[table] += rows
        deferred.message_ids.update(ref["message_id"] for ref in self.rows[MessageRef])
        deferred.mailed.update(row["to_addr"].lower() for row in self.rows[OutboxRow])
        deferred.touches += self.touches
        deferred.finishes.append(_spool.finish_values(self.spool_id, disposition, reason,
                                                      ticket_id, self.now))
