"""Which tickets: the filters and saved views (presets) of lists, bulk changes and ``#list``.

One query for every reader: ``helpdesk tickets list``, ``helpdesk tickets bulk`` and an
agent's ``#list`` by mail build a `TicketQuery` and run `statement`, so a preset means
the same wherever it is asked. The SLA conditions read the clocks as the SLA daemon last
recorded them (``sla_clocks.warned`` / ``breached``), which keeps them in SQL (and so
pageable) on both databases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select

from helpdesk.config import Settings, find_name
from helpdesk.errors import DomainError
from helpdesk.models import (
    Agent,
    Organization,
    OrganizationDomain,
    SlaClock,
    Ticket,
    TicketTag,
)

PRESETS = ("my-open", "urgent-unassigned", "sla-breaching", "overdue")
SLA_FLAGS = ("warning", "breached")


class QueryError(DomainError):
    """A filter that names nothing the desk knows; the message lists what it knows."""

    exit_code = 2


@dataclass(frozen=True)
class TicketQuery:
    """Conditions on tickets, all of which must hold; empty ones do not filter."""

    statuses: tuple[str, ...] = ()  # the desk's status names, canonical
    open_only: bool = False  # not in a resolved or closed status
    assignee: str = ""  # an agent's address
    unassigned: bool = False
    priorities: tuple[str, ...] = ()
    category: str = ""
    type: str = ""
    organization: str = ""  # its name or one of its domains
    tags: tuple[str, ...] = ()  # all of them
    sla: tuple[str, ...] = ()  # warning and/or breached, as last recorded
    overdue_at: datetime | None = None  # due before this instant
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    deleted: bool = False  # the trash instead of the desk
    limit: int | None = None
    offset: int = 0


def preset(name: str, settings: Settings, now: datetime, *, agent: str = "") -> TicketQuery:
    """The saved view ``name``; ``my-open`` needs the ``agent`` whose tickets they are.

    ``urgent-unassigned`` takes the priorities from ``urgent`` up in the configured order
    (the last one when there is no "urgent").
    """
    match name:
        case "my-open":
            if not agent:
                raise QueryError("the my-open view is an agent's: give --agent EMAIL")
            return TicketQuery(open_only=True, assignee=agent.strip().lower())
        case "urgent-unassigned":
            return TicketQuery(open_only=True, unassigned=True,
                               priorities=urgent_priorities(settings))
        case "sla-breaching":
            return TicketQuery(open_only=True, sla=SLA_FLAGS)
        case "overdue":
            return TicketQuery(open_only=True, overdue_at=now)
    raise QueryError(f"unknown view {name!r} (the views: {', '.join(PRESETS)})")


def urgent_priorities(settings: Settings) -> tuple[str, ...]:
    known = list(settings.tickets.priorities)
    lowered = [p.lower() for p in known]
    start = lowered.index("urgent") if "urgent" in lowered else len(known) - 1
    return tuple(known[start:])


def merge(base: TicketQuery, extra: TicketQuery) -> TicketQuery:
    """``base`` narrowed by every condition ``extra`` gives (a preset plus filters)."""
    changes = {f.name: getattr(extra, f.name) for f in dataclasses.fields(extra)
               if getattr(extra, f.name) != f.default}
    return dataclasses.replace(base, **changes)


def canonical(settings: Settings, *, statuses: Sequence[str] = (),
              priorities: Sequence[str] = (), category: str = "", type: str = ""
              ) -> dict[str, object]:
    """The desk's own names for what a user typed in any case; `QueryError` names the
    known ones when one is unknown."""
    from helpdesk.statuses import find

    t = settings.tickets

    def pick(kind: str, value: str, known: Sequence[str]) -> str:
        found = find_name(value, known, underscore_is_space=True)
        if found is None:
            raise QueryError(f"unknown {kind} {value!r} (known: {', '.join(known)})")
        return found

    out: dict[str, object] = {}
    if statuses:
        names = []
        for s in statuses:
            found = find(t.statuses, s)
            if found is None:
                raise QueryError(f"unknown status {s!r} (known: "
                                 f"{', '.join(x.name for x in t.statuses)})")
            names.append(found.name)
        out["statuses"] = tuple(names)
    if priorities:
        out["priorities"] = tuple(pick("priority", p, t.priorities) for p in priorities)
    if category:
        out["category"] = pick("category", category, t.categories)
    if type:
        out["type"] = pick("type", type, [x.name for x in t.types])
    return out


def statement(q: TicketQuery, settings: Settings) -> Select[Any]:
    """The tickets ``q`` selects, newest first."""
    stmt = select(Ticket).order_by(Ticket.number.desc())
    where: list[ColumnElement[bool]] = [
        Ticket.deleted_at.is_not(None) if q.deleted else Ticket.deleted_at.is_(None)]
    if q.statuses:
        where.append(Ticket.status.in_(q.statuses))
    if q.open_only:
        done = [s.name for s in settings.tickets.statuses
                if s.status_class in ("resolved", "closed")]
        where.append(Ticket.status.not_in(done))
    if q.assignee:
        where.append(Ticket.assignee_id.in_(
            select(Agent.id).where(Agent.email == q.assignee.lower())))
    if q.unassigned:
        where.append(Ticket.assignee_id.is_(None))
    if q.priorities:
        where.append(Ticket.priority.in_(q.priorities))
    if q.category:
        where.append(Ticket.category == q.category)
    if q.type:
        where.append(Ticket.type == q.type)
    if q.organization:
        wanted = q.organization.strip().lower().lstrip("@")
        where.append(Ticket.organization_id.in_(select(Organization.id).where(or_(
            func.lower(Organization.name) == wanted, Organization.domain == wanted,
            Organization.id.in_(select(OrganizationDomain.organization_id).where(
                OrganizationDomain.domain == wanted))))))
    for tag in q.tags:
        where.append(exists().where(TicketTag.ticket_id == Ticket.id,
                                    TicketTag.tag == tag.strip().lower()))
    if q.sla:
        flags = [SlaClock.warned if s == "warning" else SlaClock.breached for s in q.sla]
        where.append(exists().where(SlaClock.ticket_id == Ticket.id,
                                    SlaClock.met_at.is_(None), or_(*flags)))
    if q.overdue_at is not None:
        where.append(and_(Ticket.due_at.is_not(None), Ticket.due_at < q.overdue_at))
    if q.since is not None:
        where.append(Ticket.created_at >= q.since)
    if q.until is not None:
        where.append(Ticket.created_at < q.until)
    if where:
        stmt = stmt.where(*where)
    if q.offset:
        stmt = stmt.offset(q.offset)
    if q.limit is not None:
        stmt = stmt.limit(q.limit)
    return stmt
