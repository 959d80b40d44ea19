"""Automations: ``[[automations]]`` run actions when a ticket event matches their trigger.

Each ticket event (`helpdesk.events`) names a trigger (`trigger_of`): a new ticket, a
requester's or an agent's public message, a status, assignment or priority change, a
resolution or reopening, an SLA warning or breach, a satisfaction rating. The enabled
automations on that trigger run in order, in the event's transaction, while their
conditions hold (those of assignment rules, plus the ticket's status, the status before
and after a change, the assignee and the rating); ``stop`` ends the list for that event.

Actions change the ticket through the ticket service as ``system:automation:<name>``, so
they are audited and emit events of their own, which may trigger other automations. The
loop guard: within one chain an automation never runs twice on the same ticket, and a
chain stops at `MAX_DEPTH` levels, logged with the automation where it stopped.

The decisions (`trigger_of`, `conditions_hold`) are pure.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select

from helpdesk import audit, outbox
from helpdesk.assignment import TicketView, assign_in_team, matches
from helpdesk.audit import Actor
from helpdesk.config import Automation, AutomationAction, AutomationConditions, Settings
from helpdesk.directory import find_agent
from helpdesk.events import (
    Assigned,
    CsatRated,
    Idle,
    MessageAdded,
    PriorityChanged,
    Reopened,
    Resolved,
    SlaBreached,
    SlaWarning,
    StatusChanged,
    TicketCreated,
    TicketEvent,
)
from helpdesk.history import Change
from helpdesk.models import Agent, AuditEvent, Contact, Organization, Ticket, TicketTag
from helpdesk.notify import thread_refs
from helpdesk.refs import format_ticket_ref
from helpdesk.tickets import TicketService

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime
    from helpdesk.tx import Tx

log = structlog.get_logger("helpdesk.automation")

MAX_DEPTH = 5
"""How many automations deep one chain of changes may go before it is stopped."""

_chain: ContextVar[tuple[tuple[str, int], ...]] = ContextVar("automation_chain", default=())


def trigger_of(event: TicketEvent) -> str | None:
    """The automation trigger an event fires, or None."""
    match event:
        case TicketCreated():
            return "ticket_created"
        case MessageAdded(message=message) if message is not None and message.kind == "public":
            return "agent_replied" if message.by_agent else "requester_replied"
        case StatusChanged():
            return "status_changed"
        case Assigned():
            return "assigned"
        case PriorityChanged():
            return "priority_changed"
        case Resolved():
            return "resolved"
        case Reopened():
            return "reopened"
        case SlaBreached():
            return "sla_breached"
        case SlaWarning():
            return "sla_warning"
        case CsatRated():
            return "csat_rated"
        case Idle():
            return "idle"
    return None


def conditions_hold(when: AutomationConditions, event: TicketEvent, view: TicketView,
                    assignee: str | None) -> bool:
    """Whether ``when`` holds for ``event`` on a ticket seen as ``view``."""
    ticket = event.ticket
    if when.status and when.status.lower() != ticket.status.lower():
        return False
    if when.from_status or when.to_status:
        if not isinstance(event, StatusChanged):
            return False
        if when.from_status and when.from_status.lower() != str(event.before).lower():
            return False
        if when.to_status and when.to_status.lower() != str(event.after).lower():
            return False
    if when.assignee:
        wanted = None if when.assignee.lower() == "none" else when.assignee.lower()
        if wanted != (assignee.lower() if assignee else None):
            return False
    if when.min_score or when.max_score:
        if not isinstance(event, CsatRated):
            return False
        if when.min_score and event.score < when.min_score:
            return False
        if when.max_score and event.score > when.max_score:
            return False
    return matches(when, view)


def automation_actor(automation: Automation) -> Actor:
    """Who an automation's changes are by in the audit log: ``system:automation:<name>``."""
    return Actor("system", f"automation:{automation.name}")


class Automations:
    """The listener that runs the configured automations on every ticket event."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.reload()

    def reload(self) -> None:
        """Take the runtime's current automations (at start and on a reload)."""
        by_trigger: dict[str, list[Automation]] = {}
        settings = self.rt.settings
        for automation in all_automations(settings):
            if automation.enabled:
                by_trigger.setdefault(automation.on, []).append(automation)
        self.by_trigger = by_trigger

    async def __call__(self, event: TicketEvent, tx: Tx) -> None:
        trigger = trigger_of(event)
        candidates = self.by_trigger.get(trigger or "", [])
        if not candidates:
            return
        chain = _chain.get()
        view, assignee = await _view(tx, event)
        for automation in candidates:
            if not conditions_hold(automation.when, event, view, assignee):
                continue
            if isinstance(event, Idle) and (
                    event.hours < automation.hours
                    or await _fired_since(tx, automation, event.ticket.id, event.since)):
                continue  # not idle long enough, or already acted on this idle spell
            key = (automation.name, event.ticket.id)
            if key in chain:  # never itself again within its own chain
                log.warning("automation.loop_stopped", automation=automation.name,
                            ticket=event.ticket.number, chain=[name for name, _ in chain])
                continue
            if len(chain) >= MAX_DEPTH:
                log.warning("automation.chain_stopped", automation=automation.name,
                            ticket=event.ticket.number, depth=len(chain),
                            chain=[name for name, _ in chain])
                return
            token = _chain.set((*chain, key))
            try:
                await self._run(automation, event, tx)
            finally:
                _chain.reset(token)
            if automation.stop:
                return

    async def _run(self, automation: Automation, event: TicketEvent, tx: Tx) -> None:

        service = TicketService.for_runtime(tx.session, self.rt)
        ticket = await service.get(event.ticket.number)
        actor = automation_actor(automation)
        await tx.add(AuditEvent, audit.values(
            ticket_id=ticket.id, actor=actor, action=Change.AUTOMATION_FIRED,
            at=event.at, after={"on": automation.on, "event": event.kind}))
        log.info("automation.fired", automation=automation.name, ticket=event.ticket.number,
                 on=automation.on)
        for action in automation.actions:
            await _act(self.rt, service, ticket, action, actor, event)


def all_automations(settings: Settings) -> tuple[Automation, ...]:
    """The configured automations, then the shipped ones, in the order they run."""
    return (*settings.automations, *shipped_automations(settings))


def shipped_automations(settings: Settings) -> tuple[Automation, ...]:
    """The defaults of ``[automation_defaults]``: remind a paused ticket's requester, then
    resolve it; mail the team lead of an urgent ticket's SLA breach."""
    statuses = settings.tickets.statuses
    paused = next((s.name for s in statuses if s.status_class == "paused"), None)
    resolved = next((s.name for s in statuses if s.status_class == "resolved"), None)
    d = settings.automation_defaults
    out = []
    if paused and d.pending_reminder_hours:
        out.append(Automation(
            "default: remind a waiting requester", on="idle", hours=d.pending_reminder_hours,
            when=AutomationConditions(status=paused),
            actions=(AutomationAction(mail={"to": "requester", "template": "reminder"}),)))
    if paused and resolved and d.pending_resolve_hours:
        out.append(Automation(
            "default: resolve when the requester stays silent", on="idle",
            hours=d.pending_resolve_hours, when=AutomationConditions(status=paused),
            actions=(AutomationAction(set={"status": resolved}),)))
    if d.urgent_breach_to_lead and "urgent" in (p.lower() for p in settings.tickets.priorities):
        out.append(Automation(
            "default: urgent breach to the team lead", on="sla_breached",
            when=AutomationConditions(priority="urgent"),
            actions=(AutomationAction(mail={"to": "team_lead", "template": "escalation"}),)))
    return tuple(out)


async def _fired_since(tx: Tx, automation: Automation, ticket_id: int,
                       since: datetime | None) -> bool:
    """Whether ``automation`` already acted on the ticket since ``since``."""
    await tx.flush()
    stmt = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.ticket_id == ticket_id, AuditEvent.action == Change.AUTOMATION_FIRED,
        AuditEvent.actor == str(automation_actor(automation)))
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    return bool((await tx.session.execute(stmt)).scalar_one())


async def _act(rt: Runtime, service: TicketService, ticket: Ticket, action: AutomationAction,
               actor: Actor, event: TicketEvent) -> None:

    for name, value in action.set.items():
        if name == "status":
            await service.set_status(ticket, value, actor, reason=actor.label)
        elif name == "priority":
            await service.set_priority(ticket, value, actor)
        elif name == "category":
            await service.set_category(ticket, value, actor)
        elif name == "type":
            await service.set_type(ticket, value, actor)
    if action.tag:
        words = action.tag.split()
        adds = [w.lstrip("+") for w in words if not w.startswith("-")]
        removes = [w[1:] for w in words if w.startswith("-")]
        if adds:
            await service.add_tags(ticket, adds, actor)
        if removes:
            await service.remove_tags(ticket, removes, actor)
    if action.note:
        await service.add_message(ticket, kind="internal", text=action.note, actor=actor)
    if action.mail:
        await _mail(rt, service, ticket, action.mail["to"], action.mail["template"], actor)
    if action.webhook:
        await _webhook(rt, service, ticket, action.webhook["url"], actor, event)
    if action.assign:
        target = action.assign.strip().lower()
        if target == "none":
            await service.assign(ticket, None, actor)
        elif target.startswith("team:"):
            staff = await assign_in_team(rt, service.tx, target[5:])
            if staff is not None:
                await service.assign(ticket, await find_agent(service.session, staff.email),
                                     actor)
        else:
            agent = await find_agent(service.session, target)
            if agent is not None and agent.is_active:
                await service.assign(ticket, agent, actor)


async def _mail(rt: Runtime, service: TicketService, ticket: Ticket, to: str, template: str,
                actor: Actor) -> None:
    """A templated mail through the outbox: on the requester's public thread, or a
    staff-only notice (whose answers are internal notes) to agents or an address."""

    target = to.strip().lower()
    in_reply_to: str | None = None
    refs: list[str] = []
    if target == "requester":
        if ticket.requester.is_undeliverable:
            return
        kind, recipients = "update", [ticket.requester.email]
        in_reply_to, refs = await thread_refs(service.tx, ticket.id, ticket.requester_id)
    else:
        kind, recipients = "staff_notice", _staff(rt, ticket, target)
    if not recipients:
        log.info("automation.mail_skipped", ticket=ticket.number, to=to,
                 reason="nobody to send to")
        return
    await service.tx.outbox(outbox.row_values(
        kind=kind, template=template, to=recipients, instance_id=rt.settings.instance.id,
        secret=rt.secrets[-1], domain=rt.mail_domain, at=rt.clock(), ticket_id=ticket.id,
        ticket_number=ticket.number, in_reply_to=in_reply_to, references=refs,
        context={"automation": actor.label.partition(":")[2]}))


async def _webhook(rt: Runtime, service: TicketService, ticket: Ticket, url: str, actor: Actor,
                   event: TicketEvent) -> None:
    """An outbox row the workers POST to ``url`` (signed with the action's secret, which is
    looked up in the config at send time and never stored in the database)."""

    t = rt.settings.tickets
    payload = {
        "event": event.kind, "at": event.at.isoformat(),
        "automation": actor.label.partition(":")[2],
        "ticket": {"reference": format_ticket_ref(ticket.number, t.prefix, t.digits),
                   "number": ticket.number, "subject": ticket.subject,
                   "status": ticket.status, "priority": ticket.priority,
                   "category": ticket.category, "type": ticket.type, "queue": ticket.queue,
                   "assignee": ticket.assignee.email if ticket.assignee else None},
    }
    await service.tx.outbox(outbox.row_values(
        kind=outbox.WEBHOOK, template="", to=["webhook@invalid"],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=rt.clock(), ticket_id=ticket.id, ticket_number=ticket.number,
        context={"url": url, "automation": payload["automation"], "payload": payload}))


def _staff(rt: Runtime, ticket: Ticket, target: str) -> list[str]:
    """The addresses of ``assignee``, ``team_lead`` (the lead of a team the assignee is in,
    else of the first team), ``team:NAME`` or a plain address."""

    teams = rt.settings.teams
    assignee = ticket.assignee.email if ticket.assignee is not None else None
    if target == "assignee":
        return [assignee] if assignee else []
    if target == "team_lead":  # the lead of the assignee's team, else of the first team,
        team = next((t for t in teams if assignee and assignee in   # else the admin
                     [m.strip().lower() for m in t.members]), teams[0] if teams else None)
        lead = team.lead if team is not None and team.lead else rt.settings.instance.admin_email
        return [lead] if lead else []
    if target.startswith("team:"):
        team = rt.settings.team(target[5:])
        return list(team.members) if team is not None else []
    return [target] if "@" in target else []


async def _view(tx: Tx, event: TicketEvent) -> tuple[TicketView, str | None]:
    """The ticket as automation conditions see it, and its assignee's address."""

    ticket = event.ticket
    await tx.flush()
    session = tx.session
    row = (await session.execute(
        select(Contact.email, Organization.domain, Agent.email)
        .select_from(Ticket).join(Contact, Contact.id == Ticket.requester_id)
        .outerjoin(Organization, Organization.id == Ticket.organization_id)
        .outerjoin(Agent, Agent.id == Ticket.assignee_id)
        .where(Ticket.id == ticket.id))).one()
    tags = frozenset(t.lower() for t in (await session.execute(
        select(TicketTag.tag).where(TicketTag.ticket_id == ticket.id))).scalars())
    view = TicketView(queue=ticket.queue, category=ticket.category, priority=ticket.priority,
                      type=ticket.type, organization=row[1] or "",
                      sender_domain=row[0].rpartition("@")[2], subject=ticket.subject,
                      channel=ticket.channel, tags=tags)
    return view, row[2]
