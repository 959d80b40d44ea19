"""SLA engine: rebuild a ticket's two clocks from its history, and fire what is due, once.

Nothing here keeps a running total that could drift: each evaluation replays the ticket's
status history (audit events ``ticket.status``) through the policy's calendar, so a change
of priority, category, organization or policy simply recomputes. The first half of the
module is pure (history in, :class:`~sla_daemon.policy.ClockState` out, by the policy
module's own transitions: start, pause, resume, meet); the second half is the I/O:

* :func:`tick` takes the tickets whose stored ``sla_next_at`` is due (indexed, so the work
  grows with the tickets due, not with all open ones), row-locked with ``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL so that two ``helpdesk sla`` processes never take the same ticket;
* for each it re-evaluates, fires a warning at ``warn_fraction`` of a target and a breach at
  100% (each at most once per ticket and clock: the ``warned``/``breached`` flags in
  ``sla_clocks`` are set in the transaction that writes the outbox row), stores both
  clocks and the next instant anything can happen (NULL when every clock is met or paused).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.audit import Actor
from helpdesk.board import send_boards
from helpdesk.config import Settings
from helpdesk.events import SlaBreached, SlaWarning, TicketFacts
from helpdesk.history import Change
from helpdesk.models import AuditEvent, SlaClock, Ticket
from helpdesk.refs import format_ticket_ref
from helpdesk.report_schedule import send_due
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from sla_daemon.clock import Calendar
from sla_daemon.idle import run_idle
from sla_daemon.policy import (
    ClockState,
    Policy,
    choose_policy,
    clock_state_name,
    default_policy,
    due_at,
    elapsed_at,
    fire_events,
    meet,
    next_event_at,
    pause,
    policies_from_settings,
    resume,
    start,
    warn_at,
)

log = structlog.get_logger("sla_daemon.engine")

KINDS = ("first_response", "resolution")
SLA_ACTOR = Actor("system", "sla")
_TICK_EPSILON = timedelta(microseconds=1)
_IN_CHUNK = 1000

# --- pure: history -> clocks ------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """What the clocks depend on: creation, status changes in order, the first response."""

    created_at: datetime
    initial_status: str
    changes: tuple[tuple[datetime, str], ...] = ()  # (instant, new status)
    first_response_at: datetime | None = None


def replay(kind: str, history: History, *, at: datetime, target: float | None,
           calendar: Calendar, paused: Callable[[str], bool], done: frozenset[str],
           warned: bool = False, breached: bool = False) -> ClockState:
    """Rebuild one clock from ``history`` up to ``at`` with the policy's clock transitions.

    The clock starts at ``created_at`` and runs while the status neither pauses
    (``paused(status)``) nor is done (``done``: resolved/closed class, lower-cased). Done
    meets it, from the start of that done stretch; a later active status reopens it and
    elapsed time carries on (a reopen resumes, it does not start over). The first-response
    clock is also met, for good, by ``first_response_at``. Changes after ``at`` are ignored.
    The ``warned``/``breached`` flags are carried over as given (alerts never repeat).
    """
    steps: list[tuple[datetime, str | None]] = [
        (t, s) for t, s in history.changes if history.created_at <= t <= at]
    if kind == "first_response" and history.first_response_at is not None \
            and history.first_response_at <= at:
        steps.append((max(history.first_response_at, history.created_at), None))
    steps.sort(key=lambda step: step[0])  # stable: a reply after a change at one instant
    state = start(ClockState(target), history.created_at, calendar)
    state = _enter(state, history.created_at, history.initial_status, calendar, paused, done)
    for t, status in steps:
        if status is None:  # the first public agent reply
            state = meet(state, t, calendar)
            break
        state = _enter(state, t, status, calendar, paused, done)
    return dataclasses.replace(state, warned=warned, breached=breached)


def _enter(state: ClockState, at: datetime, status: str, cal: Calendar,
           paused: Callable[[str], bool], done: frozenset[str]) -> ClockState:
    if status.lower() in done:
        return meet(state, at, cal)
    if state.met_at is not None:  # reopened: un-meet, keep the elapsed time
        state = dataclasses.replace(state, met_at=None, running_since=None)
    return pause(state, at, cal) if paused(status) else resume(state, at, cal)


def stored_next(state: ClockState, at: datetime, cal: Calendar,
                fraction: float) -> datetime | None:
    """The next instant the daemon must look at this clock: strictly after ``at``, or None.

    Strictly after, so a tick never takes the same ticket twice (a deadline that rounds to
    ``at`` itself is looked at again a microsecond later, by the next tick).
    """
    nxt = next_event_at(state, cal, fraction)
    return None if nxt is None else max(nxt, at + _TICK_EPSILON)


# --- the engine: settings -> policies -> evaluated clocks -------------------------------


@dataclass(frozen=True)
class TicketSla:
    """A ticket's policy and its two clocks, evaluated at ``at``."""

    policy: Policy
    at: datetime
    fraction: float
    clocks: dict[str, ClockState] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """The ``sla status --json`` shape; ``warn_at``/``due_at`` null while paused or met."""
        cal = self.policy.calendar
        out: dict[str, object] = {"policy": self.policy.name}
        for kind, c in self.clocks.items():
            warn, due = warn_at(c, cal, self.fraction), due_at(c, cal)
            out[kind] = {
                "target_minutes": c.target_minutes,
                "elapsed_minutes": round(elapsed_at(c, self.at, cal), 2),
                "warn_at": warn.isoformat() if warn else None,
                "due_at": due.isoformat() if due else None,
                "state": clock_state_name(c, self.at, cal, self.fraction),
            }
        return out


class Engine:
    """Policies and status vocabulary from settings, checked once per process.

    Raises:
        ConfigError: an invalid ``[[sla.policies]]`` table.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fraction = settings.sla.warn_fraction
        self.policies = policies_from_settings(settings)
        self.fallback = default_policy(settings)
        self.paused_class = frozenset(s.name.lower() for s in settings.tickets.statuses
                                      if s.status_class == "paused")
        self.done = frozenset(s.name.lower() for s in settings.tickets.statuses
                              if s.status_class in ("resolved", "closed"))

    def policy_for(self, ticket: Ticket) -> Policy:
        org = ticket.organization
        names = [n for n in (org.domain, org.name) if n] if org is not None else []
        return choose_policy(self.policies, organization=names, category=ticket.category,
                             fallback=self.fallback)

    def evaluate(self, ticket: Ticket, history: History, at: datetime,
                 flags: Mapping[str, tuple[bool, bool]] | None = None) -> TicketSla:
        """Both clocks of ``ticket`` at ``at``; ``flags`` are stored (warned, breached)."""
        policy = self.policy_for(ticket)

        def paused(status: str) -> bool:
            return policy.pauses(status, self.paused_class)
        clocks = {}
        for kind in KINDS:
            warned, breached = (flags or {}).get(kind, (False, False))
            clocks[kind] = replay(kind, history, at=at, target=policy.target(kind, ticket.priority),
                                  calendar=policy.calendar, paused=paused, done=self.done,
                                  warned=warned, breached=breached)
        return TicketSla(policy, at, self.fraction, clocks)


# --- I/O: load histories, evaluate, fire, store -----------------------------------------


async def load_histories(session: AsyncSession, tickets: Sequence[Ticket]) -> dict[int, History]:
    """Each ticket's :class:`History` from its ``ticket.status`` audit events.

    One query per thousand tickets (``tickets list`` may ask for all of them).
    """
    changes: dict[int, list[tuple[datetime, str, str]]] = {t.id: [] for t in tickets}
    ids = list(changes)
    for i in range(0, len(ids), _IN_CHUNK):  # bound the parameters of one statement
        rows = await session.execute(
            select(AuditEvent.ticket_id, AuditEvent.created_at, AuditEvent.before,
                   AuditEvent.after)
            .where(AuditEvent.ticket_id.in_(ids[i:i + _IN_CHUNK]),
                   AuditEvent.action == Change.STATUS)
            .order_by(AuditEvent.ticket_id, AuditEvent.created_at, AuditEvent.id))
        for ticket_id, at, before, after in rows:
            if ticket_id is not None and after and "status" in after:
                changes[ticket_id].append(
                    (at, str((before or {}).get("status", "")), str(after["status"])))
    out = {}
    for t in tickets:
        own = changes[t.id]
        initial = own[0][1] if own and own[0][1] else (own[0][2] if own else t.status)
        out[t.id] = History(created_at=t.created_at, initial_status=initial,
                            changes=tuple((at, s) for at, _, s in own),
                            first_response_at=t.first_response_at)
    return out


async def evaluate_ticket(session: AsyncSession, engine: Engine, ticket: Ticket,
                          at: datetime) -> TicketSla:
    """Evaluate one ticket as of ``at`` without writing anything (``sla status``)."""
    history = (await load_histories(session, [ticket]))[ticket.id]
    return engine.evaluate(ticket, history, at)


@dataclass
class TickResult:
    """What one tick did: tickets evaluated, warnings and breaches fired."""

    tickets: int = 0
    warnings: int = 0
    breaches: int = 0

    def add(self, other: TickResult) -> None:
        self.tickets += other.tickets
        self.warnings += other.warnings
        self.breaches += other.breaches


async def recompute(session: AsyncSession, rt: Runtime, engine: Engine,
                    tickets: Sequence[Ticket], at: datetime) -> TickResult:
    """Re-evaluate ``tickets`` (locked by the caller), fire what is owed, store the clocks.

    Sets each ticket's ``sla_policy`` and ``sla_next_at`` (strictly after ``at``, or NULL),
    so a tick never takes a ticket twice. Writes into the caller's transaction: first every
    clock and ticket (one flush, batched), then the alerts, so that each alert's outbox
    flush carries only its own rows.
    """
    result = TickResult(tickets=len(tickets))
    owed: list[tuple[Ticket, TicketSla, str, ClockState, str]] = []
    histories = await load_histories(session, tickets)
    rows = {(c.ticket_id, c.kind): c for c in (await session.execute(
        select(SlaClock).where(SlaClock.ticket_id.in_([t.id for t in tickets])))).scalars()}
    for ticket in tickets:
        flags = {kind: (row.warned, row.breached) for kind in KINDS
                 if (row := rows.get((ticket.id, kind))) is not None}
        sla = engine.evaluate(ticket, histories[ticket.id], at, flags)
        cal = sla.policy.calendar
        ticket.sla_policy = sla.policy.name
        upcoming: list[datetime] = []
        for kind, clock in sla.clocks.items():
            clock, events = fire_events(clock, at, cal, engine.fraction)
            owed.extend((ticket, sla, kind, clock, event) for event in events)
            result.warnings += events.count("warning")
            result.breaches += events.count("breached")
            row = rows.get((ticket.id, kind))
            if row is None:
                row = SlaClock(ticket_id=ticket.id, kind=kind)
                session.add(row)
            running = clock.is_running
            row.target_minutes = clock.target_minutes
            row.elapsed_minutes = elapsed_at(clock, at, cal)
            row.running_since = at if running else None
            row.met_at = clock.met_at
            row.warned, row.breached = clock.warned, clock.breached
            nxt = stored_next(clock, at, cal, engine.fraction)
            if nxt is not None:
                upcoming.append(nxt)
        ticket.sla_next_at = min(upcoming, default=None)
    await session.flush()
    for ticket, sla, kind, clock, event in owed:
        await _alert(session, rt, ticket, sla, kind, clock, event, at)
    return result


async def _alert(session: AsyncSession, rt: Runtime, ticket: Ticket, sla: TicketSla,
                 kind: str, clock: ClockState, event: str, at: datetime) -> None:
    """Emit the warning or breach (``event``) of one clock through the ticket service.

    Who is escalated to is the SLA's rule: a warning goes to the assignee (else the
    admin), a breach to both. The event's audit row and its staff-only mail come from
    the service's listeners, like every other ticket change.
    """
    admin = rt.settings.instance.admin_email
    assignee = ticket.assignee.email if ticket.assignee is not None else None
    breach = event == "breached"
    to = [a for a in (assignee, admin) if a] if breach else [a for a in [assignee or admin]
                                                              if a]
    cal = sla.policy.calendar
    alert = SlaBreached if breach else SlaWarning
    await TicketService.for_runtime(session, rt).emit(alert(
        TicketFacts.of(ticket), SLA_ACTOR, rt.clock(), clock=kind, policy=sla.policy.name,
        to=tuple(dict.fromkeys(to)), as_of=at, due_at=due_at(clock, cal),
        target_minutes=clock.target_minutes,
        elapsed_minutes=round(elapsed_at(clock, at, cal), 1)))
    number = format_ticket_ref(ticket.number, rt.settings.tickets.prefix,
                               rt.settings.tickets.digits)
    name = "breach" if breach else "warning"
    log.info(f"sla.{name}", ticket=number, clock=kind, policy=sla.policy.name)


async def tick(rt: Runtime, at: datetime | None = None, *,
               engine: Engine | None = None) -> TickResult:
    """Evaluate every ticket due by ``at`` (default: the runtime's clock), batch by batch.

    Each batch is one transaction: select up to ``sla.batch_size`` tickets with
    ``sla_next_at <= at`` (on PostgreSQL ``FOR UPDATE SKIP LOCKED``: a ticket another
    process holds is left to it), recompute and fire, commit. Stops when a batch comes
    back short. Cost: index range scan on ``sla_next_at`` plus the due tickets' rows.
    """
    at = at or rt.clock()
    engine = engine or Engine(rt.settings)
    batch = max(1, rt.settings.sla.batch_size)
    total = TickResult()
    while True:
        async with rt.sessions() as session, session.begin():
            stmt = (select(Ticket.id).where(Ticket.sla_next_at <= at)
                    .order_by(Ticket.sla_next_at, Ticket.id).limit(batch))
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ids = list((await session.execute(stmt)).scalars())
            if not ids:
                break
            tickets = list((await session.execute(
                select(Ticket).where(Ticket.id.in_(ids)).order_by(Ticket.id)
            )).unique().scalars())
            total.add(await recompute(session, rt, engine, tickets, at))
        if len(ids) < batch:
            break
    # the time-based automation trigger rides on the same tick
    await run_idle(rt, lambda t: engine.policy_for(t).calendar, at, SLA_ACTOR)
    await send_boards(rt, at)  # and the agents' daily boards
    await send_due(rt, at)  # and the scheduled report
    if total.tickets:  # at info only when an alert fired: a quiet tick is not news
        emit = log.info if total.warnings or total.breaches else log.debug
        emit("sla.tick", at=at.isoformat(), tickets=total.tickets,
             warnings=total.warnings, breaches=total.breaches)
    return total
