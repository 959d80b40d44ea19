"""Auto-assignment: the ``[[assignment]]`` rules give each new ticket to the right agent.

Rules are tried in order when a ticket is created (a `TicketCreated` event, whichever way
the ticket came in) and when an agent writes ``#assign auto``; the first enabled rule
whose conditions hold decides. It names one agent (``assign``) or a team and a method:

* ``round_robin``: the team's available members in turn. The turn is a row per team
  (``assignment_turns``), locked (``FOR UPDATE`` on PostgreSQL, the write lock on SQLite)
  while it moves, so two gateway processes never hand out the same turn;
* ``least_busy``: the member with the fewest open tickets (active statuses), ties to
  whoever was assigned least recently;
* ``category``: ``categories`` maps the ticket's category to a team, then round robin.

Away (``agents.away_until``) and inactive agents are skipped. When nobody is left the
ticket stays unassigned, or goes to the team's lead with ``fallback = "lead"``. The
assignment is made by the ticket service as ``system:rule:<name>``, so the audit log
says which rule did it (and ``helpdesk rules list`` counts its hits there).

The matching and choosing are pure functions (`matches`, `first_match`, `next_in_turn`,
`least_busy`); `AutoAssigner` is the listener that feeds them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.audit import Actor
from helpdesk.config import AssignmentRule, Conditions, Settings
from helpdesk.db import insert_or_ignore
from helpdesk.errors import DomainError
from helpdesk.events import TicketCreated, TicketEvent
from helpdesk.models import (
    Agent,
    AssignmentTurn,
    Contact,
    Message,
    Organization,
    Ticket,
    TicketTag,
)

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime
    from helpdesk.tx import Tx

log = structlog.get_logger("helpdesk.assignment")
_NEW_TURN = insert_or_ignore(AssignmentTurn, "team")


@dataclass(frozen=True)
class TicketView:
    """What assignment conditions look at, all as text."""

    queue: str = ""
    category: str = ""
    priority: str = ""
    organization: str = ""
    sender_domain: str = ""
    subject: str = ""
    body: str = ""
    channel: str = ""
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Candidate:
    """A team member as the methods see one."""

    id: int
    email: str
    available: bool = True
    open_tickets: int = 0
    last_assigned_at: datetime | None = None


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def holds(pattern: str, value: str) -> bool:
    """A ``/regex/`` searches ``value``; anything else is a case-insensitive substring."""
    if not pattern:
        return True
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return _regex(pattern[1:-1]).search(value) is not None
    return pattern.lower() in value.lower()


def matches(when: Conditions, view: TicketView) -> bool:
    """Whether every condition given in ``when`` holds for ``view``."""
    for name in ("queue", "category", "priority", "organization", "sender_domain",
                 "subject", "body", "channel"):
        if not holds(getattr(when, name), getattr(view, name)):
            return False
    return {t.lower() for t in when.tags} <= view.tags


def first_match(rules: Sequence[AssignmentRule], view: TicketView) -> AssignmentRule | None:
    """The first enabled rule whose conditions hold."""
    return next((r for r in rules if r.enabled and matches(r.when, view)), None)


def next_in_turn(members: Sequence[Candidate], last_agent_id: int | None) -> Candidate | None:
    """The first available member after ``last_agent_id`` in the team's order, wrapping."""
    ids = [m.id for m in members]
    start = ids.index(last_agent_id) + 1 if last_agent_id in ids else 0
    ordered = [*members[start:], *members[:start]]
    return next((m for m in ordered if m.available), None)


def least_busy(members: Sequence[Candidate]) -> Candidate | None:
    """The available member with the fewest open tickets; ties to the longest unassigned."""
    available = [(n, m) for n, m in enumerate(members) if m.available]
    if not available:
        return None
    never = datetime.min.replace(tzinfo=None)

    def key(item: tuple[int, Candidate]) -> tuple[int, datetime, int]:
        n, m = item
        last = m.last_assigned_at.replace(tzinfo=None) if m.last_assigned_at else never
        return (m.open_tickets, last, n)

    return min(available, key=key)[1]


def rule_actor(rule: AssignmentRule) -> Actor:
    """Who an auto-assignment is by in the audit log: ``system:rule:<name>``."""
    return Actor("system", f"rule:{rule.name}")


class AutoAssigner:
    """The listener that runs the rules on each new ticket that has no agent yet."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, event: TicketEvent, tx: Tx) -> None:
        if not isinstance(event, TicketCreated) or event.ticket.assignee_id is not None:
            return
        if not self.rt.settings.assignment:
            return
        await assign_by_rules(self.rt, tx.session, event.ticket.number)


async def assign_by_rules(rt: Runtime, session: AsyncSession, number: int) -> str | None:
    """Run the assignment rules on ticket ``number``; the rule that decided, or None.

    Raises nothing when no rule matches or nobody is available: the ticket stays as it is.
    """
    from helpdesk.tickets import TicketService

    settings = rt.settings
    service = TicketService.for_runtime(session, rt)
    ticket = await service.get(number)
    view = await _view(session, ticket)
    rule = first_match(settings.assignment, view)
    if rule is None:
        return None
    now = rt.clock()
    agent = await _pick(session, settings, rule, view, now)
    if agent is None:
        log.info("assignment.nobody", ticket=number, rule=rule.name)
        return rule.name
    await service.assign(ticket, agent, rule_actor(rule))
    agent.last_assigned_at = now
    return rule.name


async def _view(session: AsyncSession, ticket: Ticket) -> TicketView:
    requester = await session.get(Contact, ticket.requester_id)
    first = (await session.execute(select(Message.text).where(
        Message.ticket_id == ticket.id).order_by(Message.id).limit(1))).scalar_one_or_none()
    org = ""
    if ticket.organization_id is not None:
        org = (await session.execute(select(Organization.domain).where(
            Organization.id == ticket.organization_id))).scalar_one_or_none() or ""
    tags = (await session.execute(select(TicketTag.tag).where(
        TicketTag.ticket_id == ticket.id))).scalars()
    email = requester.email if requester is not None else ""
    return TicketView(queue=ticket.queue, category=ticket.category, priority=ticket.priority,
                      organization=org, sender_domain=email.rpartition("@")[2],
                      subject=ticket.subject, body=first or "", channel=ticket.channel,
                      tags=frozenset(t.lower() for t in tags))


async def _pick(session: AsyncSession, settings: Settings, rule: AssignmentRule,
                view: TicketView, now: datetime) -> Agent | None:
    if rule.assign:
        agent = await _agent(session, rule.assign)
        if agent is not None and agent.is_active and not agent.is_away(now):
            return agent
        return await _fallback(session, settings, rule.team, rule)
    team_name = rule.team
    method = rule.method
    if method == "category":
        team_name = rule.categories.get(view.category) or rule.team
        method = "round_robin"
    team = settings.team(team_name) if team_name else None
    if team is None:
        return None
    agents = await _members(session, team.members)
    candidates = [Candidate(a.id, a.email, a.is_active and not a.is_away(now),
                            last_assigned_at=a.last_assigned_at) for a in agents]
    chosen: Candidate | None
    if method == "least_busy":
        loads = await _open_tickets(session, settings, [c.id for c in candidates])
        chosen = least_busy([Candidate(c.id, c.email, c.available, loads.get(c.id, 0),
                                       c.last_assigned_at) for c in candidates])
    else:
        chosen = await _take_turn(session, team.name, candidates)
    if chosen is None:
        return await _fallback(session, settings, team.name, rule)
    return next(a for a in agents if a.id == chosen.id)


async def _fallback(session: AsyncSession, settings: Settings, team_name: str,
                    rule: AssignmentRule) -> Agent | None:
    """The team's lead when the rule says so and the lead is an active agent."""
    team = settings.team(team_name) if team_name else None
    if rule.fallback != "lead" or team is None or not team.lead:
        return None
    lead = await _agent(session, team.lead)
    return lead if lead is not None and lead.is_active else None


async def _agent(session: AsyncSession, email: str) -> Agent | None:
    return (await session.execute(select(Agent).where(
        Agent.email == email.strip().lower()))).scalar_one_or_none()


async def _members(session: AsyncSession, emails: Sequence[str]) -> list[Agent]:
    """The team's agents in the order the team lists them (unknown addresses left out)."""
    wanted = [e.strip().lower() for e in emails]
    found = {a.email: a for a in (await session.execute(
        select(Agent).where(Agent.email.in_(wanted)))).scalars()}
    return [found[e] for e in wanted if e in found]


async def _open_tickets(session: AsyncSession, settings: Settings,
                        agent_ids: Sequence[int]) -> dict[int, int]:
    active = [s.name for s in settings.tickets.statuses if s.status_class == "active"]
    rows = await session.execute(
        select(Ticket.assignee_id, func.count()).where(
            Ticket.assignee_id.in_(list(agent_ids)), Ticket.status.in_(active),
            Ticket.merged_into_id.is_(None)).group_by(Ticket.assignee_id))
    return {int(agent): int(n) for agent, n in rows.all() if agent is not None}


async def _take_turn(session: AsyncSession, team: str,
                     candidates: Sequence[Candidate]) -> Candidate | None:
    """Move the team's turn to the next available member, under the turn row's lock."""
    conn = await session.connection()
    await conn.execute(_NEW_TURN[conn.dialect.name],
                       {"team": team, "last_agent_id": None, "turns": 0})
    stmt = select(AssignmentTurn).where(AssignmentTurn.team == team).execution_options(
        populate_existing=True)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    turn = (await session.execute(stmt)).scalar_one()
    chosen = next_in_turn(candidates, turn.last_agent_id)
    if chosen is not None:
        turn.last_agent_id = chosen.id
        turn.turns += 1
        await session.flush()
    return chosen


def check_rules(settings: Settings, agents: Sequence[str]) -> list[str]:
    """One line per mistake in the teams and rules that the config loader cannot see:
    addresses that are no agent of this desk (``agents``: the agents' addresses)."""
    known = {a.strip().lower() for a in agents}
    problems = []
    for team in settings.teams:
        for email in (*team.members, *([team.lead] if team.lead else [])):
            if email.strip().lower() not in known:
                problems.append(f"[[teams]] {team.name!r}: {email} is not an agent "
                                "(helpdesk agents add)")
    for rule in settings.assignment:
        if rule.assign and rule.assign.strip().lower() not in known:
            problems.append(f"[[assignment]] {rule.name!r}: {rule.assign} is not an agent "
                            "(helpdesk agents add)")
    return problems


def raise_unless_assigned(rule: str | None, number: int) -> str:
    """``#assign auto``'s answer: the rule that decided, or why none did."""
    if rule is None:
        raise DomainError(f"no assignment rule matches ticket {number}")
    return rule
