"""Who is told what: ticket events turned into outbox rows, inside the change's transaction.

Recipients and rules only, as one pure function (`notices`) of an event and the ticket's
participants, so that every way a change is made (mail, agent commands, the portal, the
CLI) tells the same people; the wording lives in templates and is composed at send time
by the responders. Requesters never receive internal notes. Automatic responses to one
address are rate-limited per hour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import bindparam, select

from helpdesk import audit, outbox
from helpdesk.direct import run
from helpdesk.events import (
    Assigned,
    MessageAdded,
    SlaAlert,
    SlaBreached,
    StatusChanged,
    TicketCreated,
    TicketEvent,
    audit_values,
)
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import Agent, AuditEvent, Contact, Message, OutboxRow, Ticket, Watcher
from helpdesk.refs import format_ticket_ref

if TYPE_CHECKING:
    from helpdesk.config import Settings
    from helpdesk.runtime import Runtime
    from helpdesk.tx import Tx

log = structlog.get_logger("helpdesk.notify")


@dataclass(frozen=True, slots=True)
class Staff:
    """An agent as notifications see one: address, whether active, which notices wanted."""

    id: int
    email: str
    is_active: bool = True
    notify_new_ticket: bool = True
    notify_reply: bool = True
    notify_assignment: bool = True
    notify_status: bool = True


@dataclass(frozen=True, slots=True)
class Participants:
    """The people around a ticket: all agents, and the requester's side that can be mailed."""

    agents: tuple[Staff, ...] = ()
    requester: str | None = None  # None: no address that takes mail
    watchers: tuple[str, ...] = ()  # deliverable watchers' addresses


@dataclass(frozen=True, slots=True)
class Notice:
    """One mail to write: to whom, of what kind, with which template.

    ``agent``: the agent whose signed reply address the mail carries (``internal``: the
    address of a staff-only notice, whose answers are internal notes); ``threaded``: a
    mail on the requester's public thread (In-Reply-To and References);
    ``action``/``before``/``after``: what changed, for an agent notice; ``context``: any
    other data for the template; ``also``: further recipients of the same mail.
    """

    kind: str
    template: str
    to: str
    agent: Staff | None = None
    threaded: bool = False
    action: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    also: tuple[str, ...] = ()
    internal: bool = False


def wants_requester_side(event: TicketEvent) -> bool:
    """Whether `notices` may mail the requester's side for ``event`` (loads it only then)."""
    return ((isinstance(event, MessageAdded) and event.message is not None
             and event.message.kind == "public" and event.message.by_agent)
            or isinstance(event, StatusChanged))


def notices(event: TicketEvent, people: Participants, settings: Settings) -> list[Notice]:
    """The mails ``event`` calls for, given the ticket's ``people``.

    * an agent's public reply goes to the requester and the watchers;
    * a requester's or watcher's public message, and a new ticket, go to the agents who
      want that notice: the assignee alone once there is one, else every active agent;
    * an assignment goes to the new assignee;
    * a status change goes to the agents who want it, and a resolution also to the
      requester;
    * nothing goes to the agent who acted, to an inactive agent, or to anyone for an
      internal note or system message.
    """
    match event:
        case MessageAdded(message=message) if message is not None and message.kind == "public":
            if message.by_agent:
                side = [a for a in (people.requester, *people.watchers) if a]
                return [Notice("reply", "agent_reply", to, threaded=True)
                        for to in dict.fromkeys(side)]
            return _to_agents(event, people, "notify_reply", "agent_reply_notice")
        case TicketCreated():
            return _to_agents(event, people, "notify_new_ticket", "agent_new_ticket")
        case Assigned() if event.ticket.assignee_id is not None:
            return _to_agents(event, people, "notify_assignment", "agent_assigned")
        case StatusChanged():
            resolved = (settings.status_class(event.after) == "resolved"
                        and people.requester is not None)
            return ([Notice("resolved", "resolved", people.requester, threaded=True)]
                    if resolved and people.requester else []) + _to_agents(
                event, people, "notify_status", "agent_status_changed")
        case SlaAlert() if event.to:
            return [_sla_notice(event, people, settings)]
    return []


def _sla_notice(event: SlaAlert, people: Participants, settings: Settings) -> Notice:
    """One staff-only mail to those the SLA policy escalates to (``event.to``).

    It carries the assignee's internal reply address: their answer runs commands and is
    kept as an internal note.
    """
    name = "breach" if isinstance(event, SlaBreached) else "warning"
    ticket, t = event.ticket, settings.tickets
    assignee = next((a for a in people.agents if a.id == ticket.assignee_id), None)
    context = {
        "ticket": format_ticket_ref(ticket.number, t.prefix, t.digits),
        "subject": ticket.subject, "priority": ticket.priority, "status": ticket.status,
        "category": ticket.category, "policy": event.policy, "clock": event.clock,
        "clock_label": event.clock.replace("_", " "), "target_minutes": event.target_minutes,
        "elapsed_minutes": event.elapsed_minutes,
        "due_at": event.due_at.isoformat() if event.due_at else None,
        "as_of": event.as_of.isoformat() if event.as_of else None,
        "assignee": assignee.email if assignee else None,
        "escalated_to": settings.instance.admin_email if name == "breach" else None,
    }
    return Notice(f"sla_{name}", f"sla_{name}", event.to[0], agent=assignee, internal=True,
                  context=context, also=tuple(event.to[1:]))


def _to_agents(event: TicketEvent, people: Participants, pref: str,
               template: str) -> list[Notice]:
    assignee = event.ticket.assignee_id
    agents = [a for a in people.agents if assignee is None or a.id == assignee]
    acting = event.actor.label if event.actor.kind == "agent" else None
    told = [a for a in agents if a.is_active and getattr(a, pref) and a.email != acting]
    if not told:
        return []
    action, before, after = _what_changed(event)
    return [Notice("agent_notice", template, a.email, agent=a, action=action, before=before,
                   after=after) for a in told]


def _what_changed(event: TicketEvent) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The change as agent notices name it: the audit action, field values before and after
    (a new ticket's are its fields; a message has none)."""
    rows = audit_values(event)
    action = str(rows[0]["action"]) if rows else ""
    if isinstance(event, MessageAdded) or not rows:
        return action, {}, {}
    return action, dict(rows[0]["before"] or {}), dict(rows[0]["after"] or {})


_AGENTS = select(Agent.id, Agent.email, Agent.is_active, Agent.notify_new_ticket,
                 Agent.notify_reply, Agent.notify_assignment,
                 Agent.notify_status).order_by(Agent.id)
_REQUESTER = select(Contact.email, Contact.is_undeliverable).join(
    Ticket, Ticket.requester_id == Contact.id).where(Ticket.id == bindparam("ticket"))
_WATCHERS = select(Contact.email).join(Watcher, Watcher.contact_id == Contact.id).where(
    Watcher.ticket_id == bindparam("ticket"), Contact.is_undeliverable.is_(False)
).order_by(Watcher.contact_id)
_AGENTS_KEY = "notify.agents"


Rule = Callable[[TicketEvent, Participants, "Settings"], list[Notice]]
"""A notification rule: the mails an event calls for, from the event and the people only."""


class Notifier:
    """The listener that writes the outbox rows its rules call for.

    ``rules``: `notices` (the product's rules) when not given. A deployment's own rule is
    registered as ``rt.listen(Notifier(rt, rules=[rule]))``; it gets the same people and
    writes through the same outbox, whichever way the change was made.
    """

    def __init__(self, rt: Runtime, rules: Sequence[Rule] | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.rules = tuple(rules) if rules is not None else (notices,)
        self._lazy = rules is None  # the product's rules say when they need the requester

    async def __call__(self, event: TicketEvent, tx: Tx) -> None:
        people = await self._participants(event, tx)
        wanted = [notice for rule in self.rules for notice in rule(event, people, self.settings)]
        if not wanted:
            return
        thread: tuple[str | None, list[str]] = (None, [])
        if any(n.threaded for n in wanted):
            thread = await thread_refs(tx, event.ticket.id, event.ticket.requester_id)
        message = getattr(event, "message", None)
        for notice in wanted:
            await tx.outbox(self.row(event, notice, message.id if message else None, thread))

    def row(self, event: TicketEvent, notice: Notice, message_pk: int | None,
            thread: tuple[str | None, list[str]]) -> dict[str, Any]:
        rt, ticket = self.rt, event.ticket
        context: dict[str, Any] = dict(notice.context)
        if notice.agent is not None:
            context["reply_to"] = agent_reply_address(rt, ticket, notice.agent,
                                                      internal=notice.internal)
        if notice.kind == "agent_notice":
            context.update(action=notice.action, before=notice.before, after=notice.after)
        in_reply_to, refs = thread if notice.threaded else (None, [])
        return outbox.row_values(
            kind=notice.kind, template=notice.template, to=[notice.to, *notice.also],
            instance_id=self.settings.instance.id, secret=rt.secrets[-1],
            domain=rt.mail_domain, at=rt.clock(), ticket_id=ticket.id,
            ticket_number=ticket.number, about_message_id=message_pk,
            in_reply_to=in_reply_to, references=refs, context=context)

    async def _participants(self, event: TicketEvent, tx: Tx) -> Participants:
        conn = await tx.connection()
        agents = tx.cache.get(_AGENTS_KEY)
        if agents is None:  # once per transaction: agents change rarely
            agents = tx.cache[_AGENTS_KEY] = tuple(
                Staff(*row) for row in (await run(conn, _AGENTS)).all())
        if self._lazy and not wants_requester_side(event):
            return Participants(agents)
        requester = (await run(conn, _REQUESTER, {"ticket": event.ticket.id})).one_or_none()
        watchers = (await run(conn, _WATCHERS, {"ticket": event.ticket.id})).all()
        return Participants(
            agents, None if requester is None or requester.is_undeliverable
            else requester.email, tuple(w.email for w in watchers))


async def thread_refs(tx: Tx, ticket_id: int,
                      requester_id: int) -> tuple[str | None, list[str]]:
    """In-Reply-To: the requester's last message; References: the public thread so far.

    Only the public thread: the requester side's own mail and what we sent to that
    side. Our notices to agents and admins, and the agents' own mail, have
    Message-IDs requesters must never see (they name internal mail, and an agent's
    Message-ID can carry its host and client).
    """
    await tx.flush()
    session = tx.session
    received = (await session.execute(
        select(Message.created_at, Message.message_id, Message.author_contact_id).where(
            Message.ticket_id == ticket_id, Message.kind == "public",
            Message.author_agent_id.is_(None), Message.message_id.is_not(None))
        .order_by(Message.id))).all()
    last_in = next((str(mid) for _, mid, author in reversed(received)
                    if author == requester_id), None)
    sent = (await session.execute(
        select(OutboxRow.created_at, OutboxRow.message_id).where(
            OutboxRow.ticket_id == ticket_id,
            OutboxRow.kind.in_(sorted(outbox.REQUESTER_KINDS))))).all()
    thread = sorted([*((at, mid) for at, mid, _ in received), *sent], key=lambda row: row[0])
    refs = list(dict.fromkeys(str(mid) for _, mid in thread))[-20:]
    return last_in, refs


def agent_reply_address(rt: Runtime, ticket: Any, agent: Any, *, internal: bool = False) -> str:
    """The agent's signed reply address for ``ticket`` (what notifications carry).

    ``internal``: the address of a staff-only notice; what the agent sends to it is an
    internal note (its commands still run).
    """
    base = ticket.queue or rt.settings.outbound.sender
    return make_reply_address(base, ticket.number, secret=rt.secrets[-1], agent_id=agent.id,
                              internal=internal)


ACK_SUPPRESSED = "ack.suppressed"
"""Audit action on a ticket whose acknowledgement an hourly limit held back."""


async def acknowledge(rt: Runtime, session, ticket: Ticket, message: Message | None,  # type: ignore[no-untyped-def]
                      template: str = "acknowledgement") -> bool:
    """`send_acknowledgement` for a caller holding the ORM ticket and message."""
    from helpdesk.tx import Tx

    requester = ticket.requester
    return await send_acknowledgement(
        rt, Tx(session), ticket_id=ticket.id, number=ticket.number, to=requester.email,
        undeliverable=requester.is_undeliverable, message_pk=message.id if message else None,
        message_id=message.message_id if message else None, template=template)


class Acknowledger:
    """The listener that acknowledges a new ticket to its requester, when the event says
    one is due (`TicketCreated.acknowledge`), within the hourly limits."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, event: TicketEvent, tx: Tx) -> None:
        if not isinstance(event, TicketCreated) or not event.acknowledge:
            return
        message = event.message
        await send_acknowledgement(
            self.rt, tx, ticket_id=event.ticket.id, number=event.ticket.number,
            to=event.requester_email, undeliverable=event.requester_undeliverable,
            message_pk=message.id if message else None,
            message_id=message.message_id if message else None, template=event.acknowledge)


async def send_acknowledgement(rt: Runtime, tx: Tx, *, ticket_id: int, number: int, to: str,
                               undeliverable: bool, message_pk: int | None,
                               message_id: str | None,
                               template: str = "acknowledgement") -> bool:
    """Queue the new-ticket acknowledgement unless the address hit the hourly limit.

    A limit that holds it back is audited on the ticket (see `ack_suppressed_audit`).
    """
    now = rt.clock()
    if not undeliverable:
        await tx.flush_for(mailed=to)  # its buffered acknowledgements count to the limit
    send, held = await ack_verdict(rt, tx.session, to, undeliverable, now)
    if held:
        await tx.add(AuditEvent, ack_suppressed_audit(ticket_id, to, held, now))
    if not send:
        return False
    await tx.outbox(ack_values(rt, to=to, template=template, ticket_id=ticket_id,
                               number=number, message_pk=message_pk, message_id=message_id,
                               at=now))
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
    """The audit row of a held-back acknowledgement, kept on the ticket."""
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
