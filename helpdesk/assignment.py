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

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.audit import Actor
from helpdesk.config import AssignmentRule, Conditions, Settings, regex_of
from helpdesk.db import insert_or_ignore
from helpdesk.direct import run
from helpdesk.events import TicketCreated, TicketEvent, TicketFacts
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
    type: str = ""
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


def holds(pattern: str, value: str) -> bool:
    """A ``/regex/`` searches ``value``; anything else is a case-insensitive substring."""
    return not pattern or _predicate(pattern)(value)


def matches(when: Conditions, view: TicketView) -> bool:
    """Whether every condition given in ``when`` holds for ``view``."""
    return _matcher(when)(view)


@lru_cache(maxsize=1024)
def _predicate(pattern: str) -> Callable[[str], bool]:
    """One condition's test, its regular expression compiled once."""
    regex = regex_of(pattern)
    if regex is not None:
        search = re.compile(regex, re.IGNORECASE).search
        return lambda value: search(value) is not None
    low = pattern.lower()
    return lambda value: low in value.lower()


@lru_cache(maxsize=1024)
def _matcher(when: Conditions) -> Callable[[TicketView], bool]:
    """``when`` as one check of only the conditions it gives (rules run on every ticket)."""
    checks = [(name, _predicate(getattr(when, name))) for name in Conditions.TEXT
              if getattr(when, name)]
    tags = frozenset(t.lower() for t in when.tags)

    def check(view: TicketView) -> bool:
        return all(test(getattr(view, name)) for name, test in checks) and tags <= view.tags

    return check


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


def team_for(rule: AssignmentRule, view: TicketView) -> str:
    """The team a team rule picks in: its ``categories`` map first for ``category``."""
    if rule.method == "category":
        return rule.categories.get(view.category) or rule.team
    return rule.team


def rule_actor(rule: AssignmentRule) -> Actor:
    """Who an auto-assignment is by in the audit log: ``system:rule:<name>``."""
    return Actor("system", f"rule:{rule.name}")


_FIELDS = (*Conditions.TEXT, "tags")
_AGENT_ROWS = select(Agent.id, Agent.email, Agent.is_active, Agent.away_until,
                     Agent.last_assigned_at)
_ORG_DOMAIN = select(Organization.domain).where(Organization.id == bindparam("org"))
_TAGS = select(TicketTag.tag).where(TicketTag.ticket_id == bindparam("ticket"))
_FIRST = (select(Message.text, Contact.email, Ticket.organization_id)
          .join(Ticket, Ticket.id == Message.ticket_id)
          .join(Contact, Contact.id == Ticket.requester_id)
          .where(Message.ticket_id == bindparam("ticket")).order_by(Message.id).limit(1))
_TURN = select(AssignmentTurn.last_agent_id).where(AssignmentTurn.team == bindparam("team"))
_MOVE_TURN = update(AssignmentTurn).where(AssignmentTurn.team == bindparam("which")).values(
    last_agent_id=bindparam("agent"), turns=AssignmentTurn.turns + 1)
_LAST_ASSIGNED = update(Agent).where(Agent.id == bindparam("agent")).values(
    last_assigned_at=bindparam("at"))
_AGENTS_KEY = "assignment.agents"


class AutoAssigner:
    """The listener that runs the rules on each new ticket that has no agent yet."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.reload()

    def reload(self) -> None:
        """Take the runtime's current rules (at start and on a reload)."""
        self.needs = needed_fields(self.rt.settings.assignment)
        # each enabled rule with its compiled conditions, tried in order on every ticket
        self.rules = [(rule, _matcher(rule.when)) for rule in self.rt.settings.assignment
                      if rule.enabled]

    async def __call__(self, event: TicketEvent, tx: Tx) -> None:
        if (not isinstance(event, TicketCreated) or event.ticket.assignee_id is not None
                or not self.rt.settings.assignment):
            return
        view = await _view(tx, self.needs, event.ticket, email=event.requester_email,
                           body=event.body, organization_id=event.organization_id)
        rule = next((rule for rule, check in self.rules if check(view)), None)
        await run_rules(self.rt, tx, event.ticket, view, rule)


def needed_fields(rules: Sequence[AssignmentRule]) -> frozenset[str]:
    """The conditions any enabled rule uses: only those are looked up."""
    return frozenset(name for rule in rules if rule.enabled for name in _FIELDS
                     if getattr(rule.when, name))


async def assign_by_rules(rt: Runtime, session: AsyncSession, number: int) -> str | None:
    """Run the rules on ticket ``number`` now (``#assign auto``): the deciding rule or None.

    No rule matching, or nobody available, leaves the ticket as it is.
    """
    from helpdesk.tickets import TICKET_BY_NUMBER
    from helpdesk.tx import Tx

    tx = Tx(session)
    await session.flush()
    await tx.flush()
    conn = await tx.connection()
    row = (await run(conn, TICKET_BY_NUMBER, {"number": number})).one()
    ticket = TicketFacts.of(row)
    first = (await run(conn, _FIRST, {"ticket": ticket.id})).one_or_none()
    view = await _view(tx, frozenset(_FIELDS), ticket,
                       email=first.email if first else "", body=first.text if first else "",
                       organization_id=first.organization_id if first else None)
    return await run_rules(rt, tx, ticket, view, first_match(rt.settings.assignment, view))


async def run_rules(rt: Runtime, tx: Tx, ticket: TicketFacts, view: TicketView,
                    rule: AssignmentRule | None) -> str | None:
    """Assign ``ticket`` by ``rule``, the first that matched; its name, or None."""
    from helpdesk.tickets import TicketService

    if rule is None:
        return None
    now = rt.clock()
    agent = await _pick(tx, rt.settings, rule, view, now)
    if agent is None:
        log.info("assignment.nobody", ticket=ticket.number, rule=rule.name)
        return rule.name
    await TicketService.for_runtime(tx.session, rt).assign(ticket, agent, rule_actor(rule))
    agent.last_assigned_at = now
    await tx.later(_LAST_ASSIGNED, {"agent": agent.id, "at": now})
    return rule.name


async def _view(tx: Tx, needs: frozenset[str], ticket: TicketFacts, *, email: str, body: str,
                organization_id: int | None) -> TicketView:
    conn = await tx.connection()
    org = ""
    if "organization" in needs and organization_id is not None:
        org = (await run(conn, _ORG_DOMAIN, {"org": organization_id})).scalar() or ""
    tags: frozenset[str] = frozenset()
    if "tags" in needs:
        await tx.flush()
        tags = frozenset(str(row.tag).lower() for row in (await run(
            conn, _TAGS, {"ticket": ticket.id})).all())
    return TicketView(queue=ticket.queue, category=ticket.category, priority=ticket.priority,
                      type=ticket.type, organization=org, sender_domain=email.rpartition("@")[2],
                      subject=ticket.subject, body=body, channel=ticket.channel, tags=tags)


@dataclass
class _Staff:
    """An agent row as assignment keeps it for the transaction (its last assignment moves)."""

    id: int
    email: str
    is_active: bool
    away_until: datetime | None
    last_assigned_at: datetime | None

    def available(self, now: datetime) -> bool:
        return self.is_active and (self.away_until is None or self.away_until <= now)


async def _agents(tx: Tx) -> dict[str, _Staff]:
    """Every agent by address, read once per transaction."""
    agents: dict[str, _Staff] | None = tx.cache.get(_AGENTS_KEY)
    if agents is None:
        rows = (await run(await tx.connection(), _AGENT_ROWS)).all()
        agents = tx.cache[_AGENTS_KEY] = {row.email: _Staff(*row) for row in rows}
    return agents


async def _pick(tx: Tx, settings: Settings, rule: AssignmentRule, view: TicketView,
                now: datetime) -> _Staff | None:
    agents = await _agents(tx)
    if rule.assign:
        agent = agents.get(rule.assign.strip().lower())
        if agent is not None and agent.available(now):
            return agent
        return _fallback(agents, settings, rule.team, rule)
    team_name = team_for(rule, view)
    method = "round_robin" if rule.method == "category" else rule.method
    team = settings.team(team_name) if team_name else None
    if team is None:
        return None
    members = [agents[e] for e in (m.strip().lower() for m in team.members) if e in agents]
    candidates = [Candidate(a.id, a.email, a.available(now),
                            last_assigned_at=a.last_assigned_at) for a in members]
    chosen: Candidate | None
    if method == "least_busy":
        loads = await _open_tickets(tx, settings, [c.id for c in candidates])
        chosen = least_busy([dataclasses.replace(c, open_tickets=loads.get(c.id, 0))
                             for c in candidates])
    else:
        chosen = await _take_turn(tx, team.name, candidates)
    if chosen is None:
        return _fallback(agents, settings, team.name, rule)
    return next(a for a in members if a.id == chosen.id)


async def assign_in_team(rt: Runtime, tx: Tx, team_name: str) -> _Staff | None:
    """The next available member of ``team_name`` in its round robin (the turn moves)."""
    team = rt.settings.team(team_name)
    if team is None:
        return None
    agents, now = await _agents(tx), rt.clock()
    members = [agents[e] for e in (m.strip().lower() for m in team.members) if e in agents]
    chosen = await _take_turn(tx, team.name, [Candidate(a.id, a.email, a.available(now))
                                              for a in members])
    return next((a for a in members if chosen is not None and a.id == chosen.id), None)


def _fallback(agents: dict[str, _Staff], settings: Settings, team_name: str,
              rule: AssignmentRule) -> _Staff | None:
    """The team's lead when the rule says so and the lead is an active agent."""
    team = settings.team(team_name) if team_name else None
    if rule.fallback != "lead" or team is None or not team.lead:
        return None
    lead = agents.get(team.lead.strip().lower())
    return lead if lead is not None and lead.is_active else None


async def _open_tickets(tx: Tx, settings: Settings,
                        agent_ids: Sequence[int]) -> dict[int, int]:
    active = [s.name for s in settings.tickets.statuses if s.status_class == "active"]
    await tx.flush()
    rows = await tx.session.execute(
        select(Ticket.assignee_id, func.count()).where(
            Ticket.assignee_id.in_(list(agent_ids)), Ticket.status.in_(active),
            Ticket.merged_into_id.is_(None), Ticket.deleted_at.is_(None))
        .group_by(Ticket.assignee_id))
    return {int(agent): int(n) for agent, n in rows.all() if agent is not None}


async def _take_turn(tx: Tx, team: str, candidates: Sequence[Candidate]) -> Candidate | None:
    """Move the team's turn to the next available member, under the turn row's lock."""
    conn = await tx.connection()
    dialect = conn.dialect.name
    known: set[str] = tx.cache.setdefault("assignment.turn_rows", set())
    if team not in known:  # once per transaction: the row is never deleted
        await run(conn, _NEW_TURN[dialect], {"team": team, "last_agent_id": None, "turns": 0})
        known.add(team)
    stmt = _TURN.with_for_update() if dialect == "postgresql" else _TURN
    last = (await run(conn, stmt, {"team": team})).scalar()
    chosen = next_in_turn(candidates, last)
    if chosen is not None:
        await run(conn, _MOVE_TURN, {"which": team, "agent": chosen.id})
    return chosen


def check_rules(settings: Settings, agents: Sequence[str]) -> list[str]:
    """One line per mistake in the teams and rules that the config loader cannot see:
    addresses that are no agent of this desk (``agents``: the agents' addresses)."""
    known = {a.strip().lower() for a in agents}
    problems = []
    for team in settings.teams:
        for email in dict.fromkeys((*team.members, *([team.lead] if team.lead else []))):
            if email.strip().lower() not in known:
                problems.append(f"[[teams]] {team.name!r}: {email} is not an agent "
                                "(helpdesk agents add)")
    for rule in settings.assignment:
        if rule.assign and rule.assign.strip().lower() not in known:
            problems.append(f"[[assignment]] {rule.name!r}: {rule.assign} is not an agent "
                            "(helpdesk agents add)")
    return problems
