"""The one writer inside the gateway's shared batches: buffered rows commit with their mail.

Mails that arrive together share one transaction (`helpdesk.groupcommit`), and the ticket
service leaves the rows nothing reads back for the batch's end (`helpdesk.tx`). A mail
that fails in such a batch is rolled back alone; none of its buffered rows may be
written by the mails that follow it, and the others' rows must all be there.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import func, select

from helpdesk.events import TicketCreated, TicketEvent
from helpdesk.models import AuditEvent, MessageRef, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tx import Tx
from mailgate.ingest import Gateway


def mail(subject: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"customer{n}@example{n}.org"
    msg["To"] = "support@support.example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Please help.")
    return msg.as_bytes()


async def test_a_mail_failing_in_a_shared_batch_leaves_no_row_and_the_others_all(
        runtime: Runtime) -> None:
    async def fail_on_poison(event: TicketEvent, tx: Tx) -> None:
        if isinstance(event, TicketCreated) and "poison" in event.ticket.subject:
            raise RuntimeError("a listener's bug, after the mail's rows were buffered")

    gateway = Gateway(runtime, listeners=[*runtime.listeners, fail_on_poison])
    subjects = ["fine 1", "poison", "fine 2", "fine 3", "poison again", "fine 4"]
    results = await asyncio.gather(*(gateway.ingest(mail(s, n), "smtp")
                                     for n, s in enumerate(subjects)))

    assert [r.disposition for r in results] == [
        "quarantined" if "poison" in s else "ticket" for s in subjects]
    async with runtime.sessions() as session:
        tickets = set((await session.execute(select(Ticket.id))).scalars())
        assert len(tickets) == 4
        for table in (AuditEvent, MessageRef, OutboxRow):
            orphans = (await session.execute(select(func.count()).select_from(table).where(
                table.ticket_id.is_not(None), table.ticket_id.not_in(tickets)))).scalar_one()
            assert orphans == 0, f"{table.__tablename__} holds rows of a rolled-back mail"
        created = (await session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "ticket.created"))).scalar_one()
        acks = (await session.execute(select(func.count()).select_from(OutboxRow).where(
            OutboxRow.kind == "ack"))).scalar_one()
    assert (created, acks) == (4, 4)
