"""An agent's questions by mail: ``#list VIEW`` and ``#search words`` answered with a list.

Each line of the answer is one ticket (number, subject, requester, priority, status, SLA
state, due time) with the agent's own signed reply address for it, so answering a line
is answering that ticket. The SLA state is the clocks' as the SLA daemon last recorded
them. The answer is an outbox row like every other mail: written in the transaction of
the mail that asked, sent by the workers.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from helpdesk import outbox
from helpdesk.models import Agent, SlaClock, Ticket
from helpdesk.notify import agent_reply_address
from helpdesk.refs import format_ticket_ref
from helpdesk.search import search
from helpdesk.ticketquery import preset, statement

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from helpdesk.runtime import Runtime

QUERY_COMMANDS = frozenset({"list", "search"})
LIST_LIMIT = 50
"""At most this many tickets in one answer; the answer says when there were more."""


def sla_label(clocks: list[SlaClock]) -> str:
    """The worst recorded state of a ticket's running clocks (pure)."""
    running = [c for c in clocks if c.met_at is None]
    if any(c.breached for c in running):
        return "breached"
    if any(c.warned for c in running):
        return "warning"
    return "on track" if running else "-"


async def answer(rt: Runtime, session: AsyncSession, agent: Agent, name: str, arg: str, *,
                 in_reply_to: str | None, asked: str) -> int:
    """Queue the answer to ``#list arg`` or ``#search arg`` for ``agent``; returns how many
    tickets it lists."""
    now = rt.clock()
    if name == "list":
        query = preset(arg, rt.settings, now, agent=agent.email)
        limited = dataclasses.replace(query, limit=LIST_LIMIT + 1)
        tickets = list((await session.execute(statement(limited, rt.settings)))
                       .unique().scalars())
        snippets: dict[int, str] = {}
        title = f"#list {arg}"
    else:
        hits = await search(session, rt.settings, arg, limit=LIST_LIMIT + 1)
        tickets = [x for h in hits if (x := await session.get(Ticket, h.ticket_id))]
        snippets = {h.ticket_id: f"{h.where}: {h.snippet}" for h in hits}
        title = f"#search {arg}"
    more = len(tickets) > LIST_LIMIT
    tickets = tickets[:LIST_LIMIT]
    rows = await ticket_rows(rt, session, agent, tickets, snippets)
    refs = [in_reply_to] if in_reply_to else []
    await outbox.enqueue(
        session, kind="agent_notice", template="agent_list", to=[agent.email],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=now, in_reply_to=in_reply_to, references=refs,
        context={"subject": f"{title}: {len(rows)}{'+' if more else ''} ticket(s)",
                 "title": title, "rows": rows, "more": more, "asked": asked})
    return len(rows)


async def ticket_rows(rt: Runtime, session: AsyncSession, agent: Agent,
                      tickets: list[Ticket], snippets: dict[int, str] | None = None
                      ) -> list[dict[str, Any]]:
    """One line's facts per ticket, with ``agent``'s signed reply address for it."""
    clocks: dict[int, list[SlaClock]] = {}
    if tickets:
        for clock in (await session.execute(select(SlaClock).where(
                SlaClock.ticket_id.in_([t.id for t in tickets])))).scalars():
            clocks.setdefault(clock.ticket_id, []).append(clock)
    t = rt.settings.tickets
    return [{
        "reference": format_ticket_ref(x.number, t.prefix, t.digits), "subject": x.subject,
        "requester": x.requester.email, "priority": x.priority, "status": x.status,
        "sla": sla_label(clocks.get(x.id, [])), "due": _when(x.due_at),
        "reply_to": agent_reply_address(rt, x, agent),
        "found": (snippets or {}).get(x.id, ""),
    } for x in tickets]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"
