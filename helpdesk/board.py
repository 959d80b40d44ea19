"""The daily board: each agent's tickets by status, by mail, once a working day.

The email-first Kanban: columns are the desk's open statuses in order (Open, In
Progress, Pending, On Hold by default), each card a ticket with its number, subject,
requester, priority and SLA state and the agent's signed reply address; below them the
urgent tickets nobody has and the tickets breaching their SLA. It goes out at ``[board]
hour`` in the instance time zone on the ``days`` given, from the SLA daemon's tick (so
``helpdesk sla tick --at`` drives it too). Each agent's ``board_sent_on`` is moved by one
conditional UPDATE in the transaction that queues the mail: of several daemons, the one
whose UPDATE changes the row sends, the others see it changed and do not.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from helpdesk import outbox
from helpdesk.config import Settings, StatusSettings
from helpdesk.desk import ticket_rows
from helpdesk.models import Agent, Ticket
from helpdesk.ticketquery import TicketQuery, preset, statement

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from helpdesk.runtime import Runtime

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CARDS = 100
"""At most this many cards in a column or section."""


def board_day(settings: Settings, at: datetime) -> date | None:
    """The local day whose board is due at ``at``; None before the hour or on a day off."""
    b = settings.board
    tz = settings.instance.zone
    local = at.astimezone(tz)
    if not b.enabled or local.hour < b.hour or WEEKDAYS[local.weekday()] not in b.days:
        return None
    return local.date()


def columns(statuses: tuple[StatusSettings, ...]) -> list[str]:
    """The board's columns: the statuses a ticket is worked in (active and paused)."""
    return [s.name for s in statuses if s.status_class in ("active", "paused")]


def cards_by_column(names: list[str], tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{name, cards}]`` in column order; every ticket lands in its status's column."""
    by = {n: [] for n in names}  # type: dict[str, list[dict[str, Any]]]
    for card in tickets:
        by.setdefault(card["status"], []).append(card)
    return [{"name": name, "cards": cards} for name, cards in by.items()]


async def send_boards(rt: Runtime, at: datetime) -> int:
    """Queue today's board for each agent who wants it and has not had it; returns how
    many were queued."""
    day = board_day(rt.settings, at)
    if day is None:
        return 0
    async with rt.read_sessions() as session:
        agents = list((await session.execute(select(Agent.id).where(
            Agent.is_active.is_(True), Agent.notify_board.is_(True),
            or_(Agent.board_sent_on.is_(None), Agent.board_sent_on < day))
            .order_by(Agent.id))).scalars())
    sent = 0
    for agent_id in agents:
        async with rt.sessions() as session, session.begin():
            claimed = await session.execute(
                update(Agent).where(Agent.id == agent_id, or_(
                    Agent.board_sent_on.is_(None), Agent.board_sent_on < day))
                .values(board_sent_on=day).execution_options(synchronize_session=False))
            if not claimed.rowcount:  # type: ignore[attr-defined]
                continue  # another daemon sent it
            agent = await session.get(Agent, agent_id)
            assert agent is not None
            await _queue(rt, session, agent, day, at)
            sent += 1
    return sent


async def _queue(rt: Runtime, session: AsyncSession, agent: Agent, day: date,
                 at: datetime) -> None:
    async def cards(query: TicketQuery) -> list[dict[str, Any]]:
        limited = dataclasses.replace(query, limit=CARDS)
        tickets: list[Ticket] = list((await session.execute(
            statement(limited, rt.settings))).unique().scalars())
        return await ticket_rows(rt, session, agent, tickets)

    names = columns(rt.settings.tickets.statuses)
    mine = await cards(TicketQuery(statuses=tuple(names), assignee=agent.email))
    urgent = await cards(preset("urgent-unassigned", rt.settings, at))
    breaching = await cards(preset("sla-breaching", rt.settings, at))
    await outbox.enqueue(
        session, kind="agent_notice", template="agent_board", to=[agent.email],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=rt.clock(),
        context={"subject": f"Your board for {day:%A %d %B %Y}: {len(mine)} ticket(s)",
                 "day": day.isoformat(), "columns": cards_by_column(names, mine),
                 "urgent": urgent, "breaching": breaching, "mine": len(mine),
                 "agent": agent.email})
