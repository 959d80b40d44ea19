"""Looks up the facts a threading decision needs (I/O), then asks the pure `decide_thread`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.mailtokens import parse_reply_address, ticket_from_message_id
from helpdesk.models import Agent, Contact, MessageRef, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from mailgate.parse import Inbound
from mailgate.thread import ThreadDecision, ThreadFacts, decide_thread, find_ticket_numbers


async def _ticket_by_number(session: AsyncSession, number: int) -> Ticket | None:
    return (await session.execute(
        select(Ticket).where(Ticket.number == number))).unique().scalar_one_or_none()


async def lookup_thread(session: AsyncSession, rt: Runtime, msg: Inbound, sender: Contact,
                        agent: Agent | None, recipients: Sequence[str]) -> ThreadDecision:
    """Gather signed references, known Message-IDs, subject tokens and participation."""
    s = rt.settings
    service = TicketService(session, s)
    refs = [*msg.in_reply_to, *reversed(msg.references)]
    signed = None
    for ref in refs:
        number = ticket_from_message_id(ref, instance_id=s.instance.id, secrets=rt.secrets)
        if number is not None and await _ticket_by_number(session, number) is not None:
            signed = number
            break
    plus = None
    header_rcpts = [a.email for a in (*msg.to, *msg.cc) if a.email]
    for rcpt in [*recipients, *header_rcpts]:
        token = parse_reply_address(rcpt, secrets=rt.secrets)
        if token is not None and await _ticket_by_number(session, token.ticket) is not None:
            plus = token.ticket
            break
    known = None
    if refs:
        row = (await session.execute(
            select(Ticket.number).join(MessageRef, MessageRef.ticket_id == Ticket.id)
            .where(MessageRef.message_id.in_(refs)).order_by(MessageRef.id.desc()).limit(1)
        )).scalar_one_or_none()
        known = int(row) if row is not None else None
    subject_numbers = []
    for number in find_ticket_numbers(msg.subject, s.tickets.prefix):
        if await _ticket_by_number(session, number) is not None:
            subject_numbers.append(number)
    participating = set()
    for number in {n for n in (known, *subject_numbers) if n is not None}:
        ticket = await _ticket_by_number(session, number)
        if ticket is not None and await service.participates(ticket, sender):
            participating.add(number)
    return decide_thread(ThreadFacts(
        signed_ref_ticket=signed, plus_address_ticket=plus, known_message_ticket=known,
        subject_tickets=tuple(subject_numbers), sender_participates=frozenset(participating),
        sender_is_agent=agent is not None))
