"""Who is told what: ticket events turned into outbox rows, inside the change's transaction.

Recipients and rules only; the wording lives in templates and is composed at send time
by the responders. Requesters never receive internal notes. Automatic responses to one
address are rate-limited per hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from helpdesk import audit, outbox
from helpdesk.history import Change
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import Agent, AuditEvent, Contact, Message, OutboxRow, Ticket, Watcher
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketEvent

log = structlog.get_logger("helpdesk.notify")


class Notifier:
    """A ticket-service listener that writes the outbox rows an event calls for."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings

    async def __call__(self, event: TicketEvent) -> None:
        if event.action == Change.MESSAGE_PUBLIC and event.message is not None:
            if event.message.author_agent_id is not None:
                await self._relay_agent_reply(event)
            else:
                await self._notify_agents(event, "notify_reply", "agent_reply_notice")
        elif event.action == Change.CREATED:
            await self._notify_agents(event, "notify_new_ticket", "agent_new_ticket")
        elif event.action == Change.ASSIGNEE and event.ticket.assignee_id:
            await self._notify_agents(event, "notify_assignment", "agent_assigned",
                                      only_assignee=True)
        elif event.action == Change.STATUS:
            if self.settings.status_class(event.after["status"]) == "resolved":
                await self._resolved_notice(event)
            await self._notify_agents(event, "notify_status", "agent_status_changed")

    async def _enqueue(self, event: TicketEvent, *, kind: str, template: str, to: list[str],
                       context: dict[str, Any] | None = None,
                       in_reply_to: str | None = None, references: list[str] | None = None
                       ) -> None:
        if not to:
            return
        from sqlalchemy.ext.asyncio import async_object_session

        session = async_object_session(event.ticket)
        assert session is not None
        await outbox.enqueue(
            session, kind=kind, template=template, to=to, instance_id=self.settings.instance.id,
            secret=self.rt.secrets[-1], domain=self.rt.mail_domain, at=self.rt.clock(),
            ticket=event.ticket,
            about_message_id=event.message.id if event.message else None,
            in_reply_to=in_reply_to, references=references or [], context=context or {},
        )

    async def _thread_refs(self, ticket: Ticket) -> tuple[str | None, list[str]]:
        """In-Reply-To: the requester's last message; References: the public thread so far.

        Only the public thread: the requester side's own mail and what we sent to that
        side. Our notices to agents and admins, and the agents' own mail, have
        Message-IDs requesters must never see (they name internal mail, and an agent's
        Message-ID can carry its host and client).
        """
        from sqlalchemy.ext.asyncio import async_object_session

        session = async_object_session(ticket)
        assert session is not None
        received = (await session.execute(
            select(Message.created_at, Message.message_id, Message.author_contact_id).where(
                Message.ticket_id == ticket.id, Message.kind == "public",
                Message.author_agent_id.is_(None), Message.message_id.is_not(None))
            .order_by(Message.id))).all()
        last_in = next((str(mid) for _, mid, author in reversed(received)
                        if author == ticket.requester_id), None)
        sent = (await session.execute(
            select(OutboxRow.created_at, OutboxRow.message_id).where(
                OutboxRow.ticket_id == ticket.id,
                OutboxRow.kind.in_(sorted(outbox.REQUESTER_KINDS))))).all()
        thread = sorted([*((at, mid) for at, mid, _ in received), *sent], key=lambda row: row[0])
        refs = list(dict.fromkeys(str(mid) for _, mid in thread))[-20:]
        return last_in, refs

    async def _requester_side(self, ticket: Ticket) -> list[str]:
        from sqlalchemy.ext.asyncio import async_object_session

        session = async_object_session(ticket)
        assert session is not None
        rows = (await session.execute(
            select(Contact.email).join(Watcher, Watcher.contact_id == Contact.id)
            .where(Watcher.ticket_id == ticket.id, Contact.is_undeliverable.is_(False))
        )).scalars().all()
        people = [] if ticket.requester.is_undeliverable else [ticket.requester.email]
        return people + [r for r in rows if r not in people]

    async def _relay_agent_reply(self, event: TicketEvent) -> None:
        in_reply_to, refs = await self._thread_refs(event.ticket)
        for address in await self._requester_side(event.ticket):
            await self._enqueue(event, kind="reply", template="agent_reply", to=[address],
                                in_reply_to=in_reply_to, references=refs)

    async def _resolved_notice(self, event: TicketEvent) -> None:
        if event.ticket.requester.is_undeliverable:
            return
        in_reply_to, refs = await self._thread_refs(event.ticket)
        await self._enqueue(event, kind="resolved", template="resolved",
                            to=[event.ticket.requester.email], in_reply_to=in_reply_to,
                            references=refs)

    async def _notify_agents(self, event: TicketEvent, pref: str, template: str, *,
                             only_assignee: bool = False) -> None:
        from sqlalchemy.ext.asyncio import async_object_session

        session = async_object_session(event.ticket)
        assert session is not None
        ticket = event.ticket
        if only_assignee or ticket.assignee_id is not None:
            agents = [a for a in [await session.get(Agent, ticket.assignee_id)] if a]
        else:
            agents = list((await session.execute(
                select(Agent).where(Agent.is_active.is_(True)).order_by(Agent.id))).scalars())
        actor_email = event.actor.label if event.actor.kind == "agent" else None
        for values in agent_notice_rows(
                self.rt, ticket, agents, pref=pref, template=template, actor_email=actor_email,
                message_pk=event.message.id if event.message else None, action=event.action,
                before=event.before, after=event.after, at=self.rt.clock()):
            await outbox.add(session, values)


def agent_reply_address(rt: Runtime, ticket: Any, agent: Any, *, internal: bool = False) -> str:
    """The agent's signed reply address for ``ticket`` (what notifications carry).

    ``internal``: the address of a staff-only notice; what the agent sends to it is an
    internal note (its commands still run).
    """
    base = ticket.queue or rt.settings.outbound.sender
    return make_reply_address(base, ticket.number, secret=rt.secrets[-1], agent_id=agent.id,
                              internal=internal)


def agent_notice_rows(rt: Runtime, ticket: Any, agents: Iterable[Any], *, pref: str,
                      template: str, actor_email: str | None, message_pk: int | None,
                      action: str, before: dict[str, Any], after: dict[str, Any],
                      at: datetime) -> list[dict[str, Any]]:
    """Outbox rows telling each agent who wants notice ``pref`` of a ticket event.

    Inactive agents, agents who turned ``pref`` off, and the agent who acted are skipped.
    Takes ORM objects or Core rows alike (``ticket``: id, number, queue), so the gateway's
    Core writer writes the same notices as this listener.
    """
    return [outbox.row_values(
        kind="agent_notice", template=template, to=[agent.email],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=at, ticket_id=ticket.id, ticket_number=ticket.number, about_message_id=message_pk,
        context={"reply_to": agent_reply_address(rt, ticket, agent), "action": action,
                 "before": before, "after": after})
        for agent in agents
        if agent.is_active and getattr(agent, pref) and agent.email != actor_email]


ACK_SUPPRESSED = "ack.suppressed"
"""Audit action on a ticket whose acknowledgement an hourly limit held back."""


async def acknowledge(rt: Runtime, session, ticket: Ticket, message: Message | None,  # type: ignore[no-untyped-def]
                      template: str = "acknowledgement") -> bool:
    """Queue the new-ticket acknowledgement unless the address hit the hourly limit.

    A limit that holds it back is audited on the ticket (see `ack_suppressed_audit`).
    """
    requester = ticket.requester
    now = rt.clock()
    send, held = await ack_verdict(rt, session, requester.email, requester.is_undeliverable,
                                   now)
    if held:
        session.add(AuditEvent(**ack_suppressed_audit(ticket.id, requester.email, held, now)))
    if not send:
        return False
    await outbox.add(session, ack_values(
        rt, to=requester.email, template=template, ticket_id=ticket.id, number=ticket.number,
        message_pk=message.id if message else None,
        message_id=message.message_id if message else None, at=now))
    return True


async def may_acknowledge(rt: Runtime, session, email: str, undeliverable: bool,  # type: ignore[no-untyped-def]
                          now: datetime) -> bool:
    """No acknowledgement to an undeliverable address, nor past the hourly limits."""
    return (await ack_verdict(rt, session, email, undeliverable, now))[0]


async def ack_verdict(rt: Runtime, session, email: str, undeliverable: bool,  # type: ignore[no-untyped-def]
                      now: datetime) -> tuple[bool, str]:
    """Whether to acknowledge, and why an hourly limit held it back ("" when none did).

    No acknowledgement to an undeliverable address (silently: the bounce was recorded),
    nor past the hourly limits, which count per mailbox (plus-tags folded, see
    `mailbox_of`) and per domain (freemail domains exempt), so neither rotating tags nor
    local parts escapes them. A limit is logged and its reason returned, because an admin
    asked why a customer got no acknowledgement must find the answer on the ticket.
    """
    if undeliverable:
        return False, ""
    out = rt.settings.outbound
    mailbox, domain = await outbox.count_recent_acks(session, to=email, since=now - outbox.HOUR)
    if mailbox >= out.ack_limit_per_hour:
        log.info(ACK_SUPPRESSED, to=email, reason="mailbox limit", sent=mailbox,
                 limit=out.ack_limit_per_hour)
        return False, (f"mailbox limit: {mailbox} acknowledgements in the last hour "
                       f"(limit {out.ack_limit_per_hour})")
    name = email.strip().lower().rpartition("@")[2]
    free = name in {d.lower() for d in rt.settings.tickets.freemail_domains}
    if out.ack_limit_per_domain_per_hour and not free \
            and domain >= out.ack_limit_per_domain_per_hour:
        log.info(ACK_SUPPRESSED, to=email, reason="domain limit", sent=domain,
                 limit=out.ack_limit_per_domain_per_hour)
        return False, (f"domain limit: {domain} acknowledgements to @{name} in the last hour "
                       f"(limit {out.ack_limit_per_domain_per_hour})")
    return True, ""


def ack_suppressed_audit(ticket_id: int, email: str, reason: str,
                         at: datetime) -> dict[str, Any]:
    """The audit row of a held-back acknowledgement; the ORM path and the Core writer share it."""
    return audit.values(ticket_id=ticket_id, actor=audit.SYSTEM, action=ACK_SUPPRESSED, at=at,
                        after={"to": email}, reason=reason)


def ack_values(rt: Runtime, *, to: str, template: str, ticket_id: int, number: int,
               message_pk: int | None, message_id: str | None, at: datetime) -> dict[str, Any]:
    """The outbox row of a new ticket's acknowledgement, threaded onto the requester's mail."""
    return outbox.row_values(
        kind="ack", template=template, to=[to], instance_id=rt.settings.instance.id,
        secret=rt.secrets[-1], domain=rt.mail_domain, at=at, ticket_id=ticket_id,
        ticket_number=number, about_message_id=message_pk, in_reply_to=message_id,
        references=[message_id] if message_id else [])
