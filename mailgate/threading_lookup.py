"""Looks up the facts a threading decision needs (I/O), then asks the pure `decide_thread`.

Core queries of a few columns only: every inbound mail runs them, agents' mail and
contacts' alike, and no ticket object is needed to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from helpdesk.db import CoreRow
from helpdesk.direct import connection, run
from helpdesk.mailtokens import parse_message_id, parse_reply_address
from helpdesk.models import Agent, MessageRef, Ticket, Watcher
from helpdesk.refs import find_ticket_numbers
from helpdesk.runtime import Runtime
from mailgate.parse import Inbound
from mailgate.routing import header_recipients
from mailgate.thread import ThreadDecision, ThreadFacts, decide_thread


class Person(Protocol):
    """A sender as threading sees it: an ORM contact or a Core contact row."""

    @property
    def id(self) -> int: ...

    @property
    def organization_id(self) -> int | None: ...


_TICKET_BY_NUMBER = select(Ticket.id, Ticket.number, Ticket.requester_id,
                           Ticket.organization_id).where(Ticket.number == bindparam("number"))


def _known_ref(refs: Any) -> Select[Any]:
    """The ticket of the newest reference we hold among a mail's In-Reply-To and References."""
    return (select(Ticket.number).join(MessageRef, MessageRef.ticket_id == Ticket.id)
            .where(MessageRef.message_id.in_(refs)).order_by(MessageRef.id.desc()).limit(1))


# One statement per count of references, with a parameter each, that `run` can send
# straight to SQLite; an expanding IN is rendered anew by SQLAlchemy on every call.
_KNOWN_REF = {n: _known_ref([bindparam(f"ref{i}") for i in range(n)]) for n in range(1, 17)}
_KNOWN_REF_ANY = _known_ref(bindparam("refs", expanding=True))
_WATCHES = select(Watcher.contact_id).where(
    Watcher.ticket_id == bindparam("ticket"), Watcher.contact_id == bindparam("contact"))


class _Tickets:
    """Ticket rows by number, each read once per lookup."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.rows: dict[int, CoreRow | None] = {}

    async def get(self, number: int) -> CoreRow | None:
        if number not in self.rows:
            self.rows[number] = (await run(
                self.conn, _TICKET_BY_NUMBER, {"number": number})).one_or_none()
        return self.rows[number]


async def participates(conn: AsyncConnection, ticket: CoreRow, sender: Person) -> bool:
    """Requester, same organization, or watcher/CC: who may add to a ticket by reference."""
    if sender.id == ticket.requester_id:
        return True
    if ticket.organization_id is not None and sender.organization_id == ticket.organization_id:
        return True
    return (await run(conn, _WATCHES, {"ticket": ticket.id, "contact": sender.id})
            ).first() is not None


async def lookup_thread(session: AsyncSession, rt: Runtime, msg: Inbound, sender: Person,
                        agent: Agent | None, recipients: Sequence[str], *,
                        agent_address_ticket: int | None = None) -> ThreadDecision:
    """Gather signed references, known Message-IDs, subject tokens and participation.

    ``agent_address_ticket``: the ticket of the signed reply address that authenticated
    ``agent``, which binds the agent's mail to that ticket.
    """
    s = rt.settings
    conn = await connection(session)
    tickets = _Tickets(conn)
    refs = [*msg.in_reply_to, *reversed(msg.references)]
    signed = internal = None
    for position, ref in enumerate(refs):
        token = parse_message_id(ref, instance_id=s.instance.id, secrets=rt.secrets)
        if token is None or await tickets.get(token.ticket) is None:
            continue
        if token.internal and position < len(msg.in_reply_to):
            internal = token.ticket  # the mail answers a staff-only notice
        if signed is None:
            signed = token.ticket
    plus = None
    for rcpt in [*recipients, *header_recipients(msg)]:
        reply_token = parse_reply_address(rcpt, secrets=rt.secrets)
        if reply_token is None or await tickets.get(reply_token.ticket) is None:
            continue
        if reply_token.internal:
            internal = internal if internal is not None else reply_token.ticket
        elif plus is None:
            plus = reply_token.ticket
    if agent_address_ticket is not None and await tickets.get(agent_address_ticket) is None:
        agent_address_ticket = None
    known = None
    if refs:
        prebuilt = _KNOWN_REF.get(len(refs))
        if prebuilt is not None:
            found = await run(conn, prebuilt, {f"ref{i}": ref for i, ref in enumerate(refs)})
        else:
            found = await conn.execute(_KNOWN_REF_ANY, {"refs": refs})
        row = found.scalar_one_or_none()
        known = int(row) if row is not None else None
    subject_numbers = [number for number in find_ticket_numbers(msg.subject, s.tickets.prefix)
                       if await tickets.get(number) is not None]
    participating = set()
    for number in {n for n in (known, *subject_numbers) if n is not None}:
        ticket = await tickets.get(number)
        if ticket is not None and await participates(conn, ticket, sender):
            participating.add(number)
    return decide_thread(ThreadFacts(
        agent_address_ticket=agent_address_ticket, internal_notice_ticket=internal,
        signed_ref_ticket=signed, plus_address_ticket=plus, known_message_ticket=known,
        subject_tickets=tuple(subject_numbers), sender_participates=frozenset(participating),
        sender_is_agent=agent is not None))
