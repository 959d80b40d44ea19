"""The time-based automation trigger: tickets with no public message for a while.

Each SLA tick (and ``helpdesk sla tick --at``) looks at the open tickets whose last public
message is older, on the wall clock, than the shortest ``idle`` threshold (business time
never runs faster than the wall clock, so nothing is missed), measures the business
hours since that message on the ticket's SLA calendar, and emits an `Idle` event through
the ticket service. The automations on "idle" decide what to do; each acts at most once
per idle spell (see `helpdesk.automation`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select

from helpdesk.audit import Actor
from helpdesk.automation import all_automations
from helpdesk.events import Idle, TicketFacts
from helpdesk.models import Message, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from sla_daemon.clock import Calendar, business_minutes_between

log = structlog.get_logger("sla_daemon.idle")


async def run_idle(rt: Runtime, calendar_of: Callable[[Ticket], Calendar], at: datetime,
                   actor: Actor) -> int:
    """Emit `Idle` for each open ticket idle at least the shortest threshold; how many.

    ``calendar_of``: the business calendar of a ticket (its SLA policy's).
    """
    settings = rt.settings
    idle = [a for a in all_automations(settings)
            if a.enabled and a.on == "idle"]
    if not idle:
        return 0
    shortest = timedelta(hours=min(a.hours for a in idle))
    open_statuses = [s.name for s in settings.tickets.statuses
                     if s.status_class in ("active", "paused")]
    last_public = (select(Message.ticket_id, func.max(Message.created_at).label("last"))
                   .where(Message.kind == "public").group_by(Message.ticket_id).subquery())
    emitted = 0
    async with rt.sessions() as session, session.begin():
        rows = (await session.execute(
            select(Ticket, last_public.c.last)
            .join(last_public, last_public.c.ticket_id == Ticket.id)
            .where(Ticket.status.in_(open_statuses), Ticket.merged_into_id.is_(None),
                   Ticket.deleted_at.is_(None), last_public.c.last <= at - shortest)
            .order_by(Ticket.id))).unique().all()
        service = TicketService.for_runtime(session, rt)
        for ticket, last in rows:
            hours = business_minutes_between(last, at, calendar_of(ticket)) / 60
            await service.emit(Idle(TicketFacts.of(ticket), actor, at, since=last,
                                    hours=hours))
            emitted += 1
    if emitted:
        log.debug("sla.idle", at=at.isoformat(), tickets=emitted)
    return emitted
