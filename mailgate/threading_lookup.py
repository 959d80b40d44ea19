"""Looks up the facts a threading decision needs (I/O), then asks the pure `decide_thread`.

Core queries of a few columns only: every inbound mail runs them, on the ORM path and on
the gateway's Core writer alike, and no ticket object is needed to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from helpdesk.db import CoreRow
from helpdesk.direct import connection, run
from helpdesk.mailtokens import parse_reply_address, ticket_from_message_id
from helpdesk.models import Agent, MessageRef, Ticket, Watcher
from helpdesk.runtime import Runtime
from mailgate.parse import Inbound
from mailgate.routing import header_recipients
from mailgate.thread import ThreadDecision, ThreadFacts, decide_thread, find_ticket_numbers


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
                        agent: Agent | None, recipients: Sequence[str]) -> ThreadDecision:
    """Gather signed references, known Message-IDs, subject tokens and participation."""
    s = rt.settings
    conn = await connection(session)
    tickets = _Tickets(conn)
    refs = [*msg.in_reply_to, *reversed(msg.references)]
    signed = None
    for ref in refs:
        number = ticket_from_message_id(ref, instance_id=s.instance.id, secrets=rt.secrets)
        if number is not None and await tickets.get(number) is not None:
            signed = number
            break
    plus = None
    for rcpt in [*recipients, *header_recipients(msg)]:
        token = parse_reply_address(rcpt, secrets=rt.secrets)
        if token is not None and await tickets.get(token.ticket) is not None:
            plus = token.ticket
            break
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
        signed_ref_ticket=signed, plus_address_ticket=plus, known_message_ticket=known,
        subject_tickets=tuple(subject_numbers), sender_participates=frozenset(participating),
        sender_is_agent=agent is not None))
