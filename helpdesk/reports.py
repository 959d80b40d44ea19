"""Reports: what a support lead asks first, computed by the database.

Every figure is an aggregate query over the tickets, the SLA clocks the SLA daemon keeps
and the ratings; Python only shapes the answer. The rules of the arithmetic:

* A ticket counts once: a ticket merged into another and a ticket in the trash count
  nowhere; the ticket they were merged into carries their history.
* ``created``: tickets opened in ``[since, until)``; ``resolved``: tickets whose latest
  resolution falls in it (a reopened ticket's resolution time is its last);
  ``open``: tickets opened before ``until`` and not resolved by then; ``backlog_start``
  the same at ``since``.
* Times are minutes. Wall-clock: from creation to the first agent reply, or to the last
  resolution. Business: the SLA clock of the ticket's own policy and calendar, which
  stops while the ticket is paused, so paused time never counts.
* An empty range gives zeros and ``None`` for the statistics ("no data"), never a
  division error.

The JSON form is the stable one (README "Reports"); the table and CSV forms are made
from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.config import Settings
from helpdesk.models import (
    Agent,
    CsatRating,
    Message,
    Organization,
    SlaClock,
    Ticket,
)

SECTIONS = ("overview", "trends", "agents", "sla", "csat", "channels", "health")


@dataclass(frozen=True)
class Scope:
    """What a report covers: a range and optional narrowing."""

    since: datetime
    until: datetime
    queue: str = ""
    agent: str = ""  # the assignee's address
    organization: str = ""  # name or domain
    type: str = ""  # a ticket type, as the desk names it


def minutes_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """``later - earlier`` in minutes, as the database computes it."""
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier) / 60.0
    return (func.julianday(later) - func.julianday(earlier)) * 1440.0


def _counted(scope: Scope) -> list[ColumnElement[bool]]:
    """Tickets that count: not merged away, not in the trash, within the narrowing."""
    where: list[ColumnElement[bool]] = [Ticket.merged_into_id.is_(None),
                                        Ticket.deleted_at.is_(None)]
    if scope.queue:
        where.append(Ticket.queue == scope.queue.lower())
    if scope.agent:
        where.append(Ticket.assignee_id.in_(
            select(Agent.id).where(Agent.email == scope.agent.lower())))
    if scope.type:
        where.append(Ticket.type == scope.type)
    if scope.organization:
        wanted = scope.organization.lower()
        where.append(Ticket.organization_id.in_(select(Organization.id).where(
            (func.lower(Organization.name) == wanted) | (Organization.domain == wanted))))
    return where


async def stats(session: AsyncSession, value: ColumnElement[Any],
                where: list[ColumnElement[bool]], *, joins: Any = None) -> dict[str, Any]:
    """count, mean, median and 90th percentile of ``value`` over the rows ``where`` holds.

    PostgreSQL computes the percentiles (``percentile_cont``); SQLite has none, so it is
    asked for the one or two ordered values each percentile interpolates between.
    """
    base = select(value.label("v"))
    if joins is not None:
        base = base.select_from(joins)
    base = base.where(*where, value.is_not(None))
    sub = base.subquery()
    if session.get_bind().dialect.name == "postgresql":  # one pass for all four
        count, mean, median, p90 = (await session.execute(select(
            func.count(), func.avg(sub.c.v),
            func.percentile_cont(0.5).within_group(sub.c.v),
            func.percentile_cont(0.9).within_group(sub.c.v)))).one()
        if not count:
            return {"count": 0, "mean": None, "median": None, "p90": None}
    else:
        count, mean = (await session.execute(
            select(func.count(), func.avg(sub.c.v)))).one()
        if not count:
            return {"count": 0, "mean": None, "median": None, "p90": None}
        median = await _percentile(session, sub, int(count), 0.5)
        p90 = await _percentile(session, sub, int(count), 0.9)
    return {"count": int(count), "mean": _round(mean), "median": _round(median),
            "p90": _round(p90)}


async def _percentile(session: AsyncSession, sub: Any, count: int, q: float) -> float:
    """Linear interpolation between the ordered values around rank ``q * (count - 1)``,
    as ``percentile_cont`` does."""
    rank = q * (count - 1)
    low = int(rank)
    rows = list((await session.execute(select(sub.c.v).order_by(sub.c.v).offset(low)
                                       .limit(2))).scalars())
    if len(rows) == 1 or rank == low:
        return float(rows[0])
    return float(rows[0]) + (float(rows[1]) - float(rows[0])) * (rank - low)


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _pct(part: int, whole: int) -> float | None:
    return None if not whole else round(100.0 * part / whole, 1)


async def overview(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """The headline figures of ``scope``."""
    dialect = session.get_bind().dialect.name
    counted = _counted(scope)
    in_range = [*counted, Ticket.created_at >= scope.since, Ticket.created_at < scope.until]
    resolved_in = [*counted, Ticket.resolved_at >= scope.since,
                   Ticket.resolved_at < scope.until]

    def open_at(at: datetime) -> ColumnElement[bool]:
        return and_(Ticket.created_at < at,
                    (Ticket.resolved_at.is_(None)) | (Ticket.resolved_at >= at))

    def tally(condition: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    # the four counts in one pass over the tickets that count
    created, resolved, open_end, backlog = (await session.execute(
        select(tally(and_(Ticket.created_at >= scope.since, Ticket.created_at < scope.until)),
               tally(and_(Ticket.resolved_at >= scope.since,
                          Ticket.resolved_at < scope.until)),
               tally(open_at(scope.until)), tally(open_at(scope.since)))
        .select_from(Ticket).where(*counted))).one()
    created, resolved = int(created), int(resolved)
    first = minutes_between(Ticket.first_response_at, Ticket.created_at, dialect)
    resolution = minutes_between(Ticket.resolved_at, Ticket.created_at, dialect)
    clocks = Ticket.__table__.join(SlaClock.__table__, SlaClock.ticket_id == Ticket.id)
    business_first = await stats(session, cast(SlaClock.elapsed_minutes, Float), [
        *in_range, SlaClock.kind == "first_response", SlaClock.met_at.is_not(None)],
        joins=clocks)
    business_resolution = await stats(session, cast(SlaClock.elapsed_minutes, Float), [
        *resolved_in, SlaClock.kind == "resolution", SlaClock.met_at.is_not(None)],
        joins=clocks)
    compliance = {}
    for kind in ("first_response", "resolution"):
        met, breached = (await session.execute(
            select(func.count(), func.coalesce(func.sum(case((SlaClock.breached, 1),
                                                             else_=0)), 0))
            .select_from(clocks).where(*in_range, SlaClock.kind == kind,
                                       (SlaClock.met_at.is_not(None)) | SlaClock.breached)
        )).one()
        done = int(met)
        compliance[kind] = {"clocks": done, "breached": int(breached),
                            "percent": _pct(done - int(breached), done)}
    ratings = await csat_totals(session, scope)
    return {
        "range": {"since": scope.since.isoformat(), "until": scope.until.isoformat()},
        "created": created, "resolved": resolved,
        "open": int(open_end), "backlog_start": int(backlog),
        "first_response": {**await stats(session, first, [
            *in_range, Ticket.first_response_at.is_not(None)]),
            "business": business_first},
        "resolution": {**await stats(session, resolution, resolved_in),
                       "business": business_resolution},
        "sla": compliance,
        "csat": {"average": ratings["average"], "ratings": ratings["count"],
                 "response_rate": _pct(ratings["count"], resolved)},
    }


async def csat_totals(session: AsyncSession, scope: Scope) -> dict[str, Any]:
    where = [*_counted(scope), CsatRating.updated_at >= scope.since,
             CsatRating.updated_at < scope.until]
    n, avg = (await session.execute(
        select(func.count(), func.avg(CsatRating.score)).select_from(CsatRating)
        .join(Ticket, Ticket.id == CsatRating.ticket_id).where(*where))).one()
    return {"count": int(n), "average": None if not n else round(float(avg), 2)}


async def csat(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """Ratings given in ``scope``: average, the 1-5 distribution, by agent, by
    organization, and the comments."""
    where = [*_counted(scope), CsatRating.updated_at >= scope.since,
             CsatRating.updated_at < scope.until]
    joined = CsatRating.__table__.join(Ticket.__table__, Ticket.id == CsatRating.ticket_id)
    totals = await csat_totals(session, scope)
    dist = dict((await session.execute(select(CsatRating.score, func.count())
                                       .select_from(joined).where(*where)
                                       .group_by(CsatRating.score))).all())

    async def grouped(label: Any, outer: Any) -> list[dict[str, Any]]:
        rows = await session.execute(
            select(label, func.count(), func.avg(CsatRating.score)).select_from(outer)
            .where(*where).group_by(label).order_by(label))
        return [{"name": name or "(none)", "ratings": int(n), "average": round(float(a), 2)}
                for name, n, a in rows.all()]

    by_agent = await grouped(Agent.email, joined.outerjoin(
        Agent.__table__, Agent.id == Ticket.assignee_id))
    by_org = await grouped(Organization.name, joined.outerjoin(
        Organization.__table__, Organization.id == Ticket.organization_id))
    comments = await session.execute(
        select(Ticket.number, CsatRating.score, CsatRating.comment).select_from(joined)
        .where(*where, CsatRating.comment != "").order_by(CsatRating.updated_at))
    week = week_of(CsatRating.updated_at, session.get_bind().dialect.name)
    trend = (await session.execute(select(week, func.count(), func.avg(CsatRating.score))
                                   .select_from(joined).where(*where).group_by(week)
                                   .order_by(week))).all()
    t = settings.tickets
    return {**totals, "distribution": {str(s): int(dist.get(s, 0)) for s in range(1, 6)},
            "trend": [{"week": str(w), "ratings": int(n), "average": round(float(a), 2)}
                      for w, n, a in trend],
            "by_agent": by_agent, "by_organization": by_org,
            "comments": [{"ticket": f"{t.prefix}{n:0{t.digits}d}", "score": s, "comment": c}
                         for n, s, c in comments.all()]}


async def grouped_median(session: AsyncSession, key: Any, value: ColumnElement[Any],
                         where: list[ColumnElement[bool]], *, joins: Any = None
                         ) -> dict[Any, float]:
    """The median of ``value`` per ``key``, in one query on either database: the one or
    two middle rows of each group (window functions), averaged, as ``percentile_cont``
    would give."""
    inner = select(key.label("k"), value.label("v"),
                   func.row_number().over(partition_by=key, order_by=value).label("rn"),
                   func.count().over(partition_by=key).label("n"))
    if joins is not None:
        inner = inner.select_from(joins)
    sub = inner.where(*where, value.is_not(None)).subquery()
    rows = await session.execute(
        select(sub.c.k, func.avg(sub.c.v))
        .where(sub.c.rn.between((sub.c.n + 1) // 2, (sub.c.n + 2) // 2)).group_by(sub.c.k))
    return {k: round(float(m), 1) for k, m in rows.all()}


async def agents(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """Per agent: tickets handled (assigned, opened in range), public replies in range,
    median first response and resolution (wall-clock), CSAT average, open load now.

    One grouped query per figure, whatever the number of agents.
    """
    dialect = session.get_bind().dialect.name
    counted = _counted(Scope(scope.since, scope.until, scope.queue, "", scope.organization,
                             scope.type))
    done = [s.name for s in settings.tickets.statuses
            if s.status_class in ("resolved", "closed")]
    who = select(Agent).order_by(Agent.email)
    if scope.agent:
        who = who.where(Agent.email == scope.agent.lower())
    staff = list((await session.execute(who)).scalars())
    key = Ticket.assignee_id
    in_range = [*counted, key.is_not(None), Ticket.created_at >= scope.since,
                Ticket.created_at < scope.until]

    async def per(stmt: Any) -> dict[Any, Any]:
        return {k: v for k, v in (await session.execute(stmt)).all()}

    handled = await per(select(key, func.count()).where(*in_range).group_by(key))
    load = await per(select(key, func.count()).where(
        *counted, key.is_not(None), Ticket.status.not_in(done)).group_by(key))
    replies = await per(select(Message.author_agent_id, func.count()).where(
        Message.author_agent_id.is_not(None), Message.kind == "public",
        Message.created_at >= scope.since, Message.created_at < scope.until)
        .group_by(Message.author_agent_id))
    first = await grouped_median(session, key, minutes_between(
        Ticket.first_response_at, Ticket.created_at, dialect), in_range)
    resolution = await grouped_median(session, key, minutes_between(
        Ticket.resolved_at, Ticket.created_at, dialect),
        [*counted, key.is_not(None), Ticket.resolved_at >= scope.since,
         Ticket.resolved_at < scope.until])
    rated = await per(select(key, func.avg(CsatRating.score)).select_from(CsatRating)
                      .join(Ticket, Ticket.id == CsatRating.ticket_id)
                      .where(*counted, key.is_not(None), CsatRating.updated_at >= scope.since,
                             CsatRating.updated_at < scope.until).group_by(key))
    return {"agents": [{
        "agent": a.email, "name": a.name, "handled": int(handled.get(a.id, 0)),
        "replies": int(replies.get(a.id, 0)), "first_response_median": first.get(a.id),
        "resolution_median": resolution.get(a.id),
        "csat_average": None if rated.get(a.id) is None else round(float(rated[a.id]), 2),
        "open_load": int(load.get(a.id, 0))} for a in staff]}


async def channels(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """Volume (tickets opened in range) and median resolution by channel."""
    dialect = session.get_bind().dialect.name
    counted = _counted(scope)
    out = []
    for channel in settings.tickets.channels:
        in_range = [*counted, Ticket.channel == channel, Ticket.created_at >= scope.since,
                    Ticket.created_at < scope.until]
        volume = int((await session.execute(
            select(func.count()).select_from(Ticket).where(*in_range))).scalar_one())
        resolution = await stats(session, minutes_between(
            Ticket.resolved_at, Ticket.created_at, dialect),
            [*counted, Ticket.channel == channel, Ticket.resolved_at >= scope.since,
             Ticket.resolved_at < scope.until])
        out.append({"channel": channel, "tickets": volume,
                    "resolution_median": resolution["median"]})
    return {"channels": out}


def day_of(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp, as text ``YYYY-MM-DD``, on either database."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def week_of(column: Any, dialect: str) -> ColumnElement[Any]:
    """The Monday of a timestamp's ISO week (UTC), as text ``YYYY-MM-DD``."""
    if dialect == "postgresql":
        return func.to_char(func.date_trunc("week", func.timezone("UTC", column)),
                            "YYYY-MM-DD")
    # SQLite: step back to Monday (strftime %w: Sunday 0)
    return func.date(column, func.printf("-%d days", (func.strftime("%w", column) + 6) % 7))


async def trends(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """Volume per day (per week over ranges longer than 62 days), and how the tickets
    opened in the range divide by status, priority, category and type."""
    dialect = session.get_bind().dialect.name
    in_range = [*_counted(scope), Ticket.created_at >= scope.since,
                Ticket.created_at < scope.until]
    weekly = (scope.until - scope.since).days > 62
    bucket = (week_of if weekly else day_of)(Ticket.created_at, dialect)
    volume = (await session.execute(select(bucket, func.count()).where(*in_range)
                                    .group_by(bucket).order_by(bucket))).all()

    async def split(column: Any) -> dict[str, int]:
        rows = await session.execute(select(column, func.count()).where(*in_range)
                                     .group_by(column).order_by(func.count().desc(), column))
        return {str(name): int(n) for name, n in rows.all()}

    resolved_bucket = (week_of if weekly else day_of)(Ticket.resolved_at, dialect)
    resolution = (await session.execute(
        select(resolved_bucket, func.avg(minutes_between(Ticket.resolved_at,
                                                         Ticket.created_at, dialect)))
        .where(*_counted(scope), Ticket.resolved_at >= scope.since,
               Ticket.resolved_at < scope.until)
        .group_by(resolved_bucket).order_by(resolved_bucket))).all()
    orgs = (await session.execute(
        select(Organization.name, func.count()).select_from(Ticket)
        .join(Organization, Organization.id == Ticket.organization_id).where(*in_range)
        .group_by(Organization.name).order_by(func.count().desc(), Organization.name)
        .limit(15))).all()
    return {"per": "week" if weekly else "day",
            "volume": [{"period": str(p), "tickets": int(n)} for p, n in volume],
            "resolution_mean": [{"period": str(p), "minutes": _round(m)}
                                for p, m in resolution],
            "by_organization": {str(name): int(n) for name, n in orgs},
            "by_status": await split(Ticket.status),
            "by_priority": await split(Ticket.priority),
            "by_category": await split(Ticket.category),
            "by_type": await split(Ticket.type)}


async def sla(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """Compliance per clock by priority and by policy over the tickets opened in the
    range (a clock counts once it is met or breached), breaches per day, and the tickets
    breaching now."""
    from helpdesk.history import Change
    from helpdesk.models import AuditEvent

    dialect = session.get_bind().dialect.name
    in_range = [*_counted(scope), Ticket.created_at >= scope.since,
                Ticket.created_at < scope.until]
    clocks = Ticket.__table__.join(SlaClock.__table__, SlaClock.ticket_id == Ticket.id)
    decided = (SlaClock.met_at.is_not(None)) | SlaClock.breached

    async def compliance(by: Any) -> list[dict[str, Any]]:
        rows = await session.execute(
            select(by, SlaClock.kind, func.count(),
                   func.sum(case((SlaClock.breached, 1), else_=0)))
            .select_from(clocks).where(*in_range, decided)
            .group_by(by, SlaClock.kind).order_by(by, SlaClock.kind))
        return [{"name": name or "(none)", "clock": kind, "clocks": int(n),
                 "breached": int(b or 0), "percent": _pct(int(n) - int(b or 0), int(n))}
                for name, kind, n, b in rows.all()]

    day = day_of(AuditEvent.created_at, dialect)
    per_day = (await session.execute(
        select(day, func.count()).select_from(AuditEvent)
        .join(Ticket, Ticket.id == AuditEvent.ticket_id)
        .where(*_counted(scope), AuditEvent.action == Change.SLA_BREACH,
               AuditEvent.created_at >= scope.since, AuditEvent.created_at < scope.until)
        .group_by(day).order_by(day))).all()
    t = settings.tickets
    now = (await session.execute(
        select(Ticket.number, Ticket.subject, Ticket.priority, SlaClock.kind)
        .select_from(clocks).where(*_counted(scope), SlaClock.met_at.is_(None),
                                   SlaClock.breached).order_by(Ticket.number))).all()
    return {"by_priority": await compliance(Ticket.priority),
            "by_policy": await compliance(Ticket.sla_policy),
            "breaches_per_day": [{"day": str(d), "breaches": int(n)} for d, n in per_day],
            "breaching_now": [{"ticket": f"{t.prefix}{n:0{t.digits}d}", "subject": subj,
                               "priority": prio, "clock": kind}
                              for n, subj, prio, kind in now]}


HEALTH_LOW_CSAT = 3.0
"""An organization whose average rating is below this is at risk."""


async def health(session: AsyncSession, settings: Settings, scope: Scope) -> dict[str, Any]:
    """Organizations ranked by risk, with the reasons: a low average rating, SLA breaches,
    tickets reopened, and volume rising (the range's second half over its first).

    Each reason adds to the score: a low rating (below 3) 3 points and 1 more per point
    below; each breach 1; a reopen rate of a fifth or more 2; volume up by half or more
    2. Organizations with no reason are left out.
    """
    from helpdesk.history import Change
    from helpdesk.models import AuditEvent

    counted = _counted(scope)
    in_range = [*counted, Ticket.created_at >= scope.since, Ticket.created_at < scope.until]
    half = scope.since + (scope.until - scope.since) / 2
    done = [s.name for s in settings.tickets.statuses
            if s.status_class in ("resolved", "closed")]
    org = Ticket.organization_id

    async def per_org(stmt: Any) -> dict[int, Any]:
        return {o: v for o, *v in (await session.execute(stmt)).all() if o is not None}

    volume = await per_org(select(org, func.count(),
                                  func.sum(case((Ticket.created_at >= half, 1), else_=0)))
                           .where(*in_range).group_by(org))
    ratings = await per_org(select(org, func.count(), func.avg(CsatRating.score))
                            .select_from(CsatRating).join(Ticket, Ticket.id ==
                                                          CsatRating.ticket_id)
                            .where(*counted, CsatRating.updated_at >= scope.since,
                                   CsatRating.updated_at < scope.until).group_by(org))
    breaches = await per_org(select(org, func.count()).select_from(SlaClock)
                             .join(Ticket, Ticket.id == SlaClock.ticket_id)
                             .where(*in_range, SlaClock.breached).group_by(org))
    was_done = AuditEvent.before["status"].as_string().in_(done)
    now_open = AuditEvent.after["status"].as_string().not_in(done)
    reopens = await per_org(select(org, func.count(func.distinct(Ticket.id)))
                            .select_from(AuditEvent).join(Ticket, Ticket.id ==
                                                          AuditEvent.ticket_id)
                            .where(*in_range, AuditEvent.action == Change.STATUS,
                                   was_done, now_open).group_by(org))
    names = dict((await session.execute(select(Organization.id, Organization.name))).all())
    ranked: list[dict[str, Any]] = []
    for org_id in set(volume) | set(ratings) | set(breaches):
        score, reasons = 0.0, []
        total, late = (volume.get(org_id) or (0, 0))
        n_rated, avg = ratings.get(org_id) or (0, None)
        if avg is not None and float(avg) < HEALTH_LOW_CSAT:
            score += 3 + (HEALTH_LOW_CSAT - float(avg))
            reasons.append(f"average rating {float(avg):.1f} over {n_rated} rating(s)")
        if org_id in breaches:
            score += int(breaches[org_id][0])
            reasons.append(f"{int(breaches[org_id][0])} SLA breach(es)")
        reopened = int(reopens.get(org_id, (0,))[0])
        if total and reopened / total >= 0.2:
            score += 2
            reasons.append(f"{reopened} of {total} ticket(s) reopened")
        early = int(total) - int(late or 0)
        if early and int(late or 0) >= 1.5 * early:
            score += 2
            reasons.append(f"volume up from {early} to {int(late)} (first to second half)")
        if reasons:
            ranked.append({"organization": names.get(org_id, "?"), "score": round(score, 1),
                           "tickets": int(total), "reasons": reasons})
    ranked.sort(key=lambda r: (-float(r["score"]), str(r["organization"])))
    return {"organizations": ranked}


BUILDERS = {"overview": overview, "trends": trends, "agents": agents, "sla": sla,
            "csat": csat, "channels": channels, "health": health}


async def report(session: AsyncSession, settings: Settings, section: str,
                 scope: Scope) -> dict[str, Any]:
    """One section, or ``all`` of them keyed by name."""
    if section == "all":
        return {name: await build(session, settings, scope)
                for name, build in BUILDERS.items()}
    return await BUILDERS[section](session, settings, scope)


async def dashboard(session: AsyncSession, settings: Settings, now: datetime,
                    day_start: datetime) -> dict[str, Any]:
    """The three widget figures (open tickets, SLA breaches today, overdue tickets) and
    today's cards: created, resolved, unassigned open, first response median."""
    dialect = session.get_bind().dialect.name
    counted = _counted(Scope(day_start, now))
    done = [s.name for s in settings.tickets.statuses
            if s.status_class in ("resolved", "closed")]
    is_open = [*counted, Ticket.status.not_in(done)]

    async def count(where: list[ColumnElement[bool]], table: Any = Ticket) -> int:
        return int((await session.execute(
            select(func.count()).select_from(table).where(*where))).scalar_one())

    from helpdesk.history import Change
    from helpdesk.models import AuditEvent

    breaches = int((await session.execute(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == Change.SLA_BREACH, AuditEvent.created_at >= day_start,
        AuditEvent.created_at < now))).scalar_one())
    first = await stats(session, minutes_between(Ticket.first_response_at, Ticket.created_at,
                                                 dialect),
                        [*counted, Ticket.created_at >= day_start,
                         Ticket.first_response_at.is_not(None)])
    return {
        "open": await count(is_open),
        "sla_breaches_today": breaches,
        "overdue": await count([*is_open, Ticket.due_at.is_not(None), Ticket.due_at < now]),
        "created_today": await count([*counted, Ticket.created_at >= day_start]),
        "resolved_today": await count([*counted, Ticket.resolved_at >= day_start]),
        "unassigned_open": await count([*is_open, Ticket.assignee_id.is_(None)]),
        "first_response_median_today": first["median"],
    }
