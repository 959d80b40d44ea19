"""The one writer: the rows a mail leaves are those its events and the rules say.

Mails that arrive together share one transaction (`helpdesk.groupcommit`), and the ticket
service leaves the rows nothing reads back for the batch's end (`helpdesk.tx`). A mail
that fails in such a batch is rolled back alone; none of its buffered rows may be
written by the mails that follow it, and the others' rows must all be there.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from helpdesk.directory import add_agent
from helpdesk.events import TicketCreated, TicketEvent, audit_values
from helpdesk.models import AuditEvent, MessageRef, OutboxRow, Ticket
from helpdesk.notify import Participants, Staff, notices
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


async def test_every_corpus_mail_writes_the_rows_its_events_and_rules_say(
        runtime: Runtime, corpus: Path) -> None:
    """For each corpus mail: the events fit its outcome, and the audit log and the agent
    notices are exactly what `audit_values` and `notices` make of those events."""
    async with runtime.sessions() as session, session.begin():
        bob = await add_agent(session, "bob@support.example.com", "Bob")
    staff = Participants((Staff(bob.id, bob.email),))
    events: list[TicketEvent] = []

    async def record(event: TicketEvent, tx: Tx) -> None:
        events.append(event)

    gateway = Gateway(runtime, listeners=[*runtime.listeners, record])
    expected_audit: Counter[tuple[Any, ...]] = Counter()
    expected_notices: Counter[tuple[str, str, str]] = Counter()
    acknowledged: set[int] = set()  # tickets whose TicketCreated asked for an acknowledgement
    wrong: list[str] = []
    for line in (corpus / "expected.jsonl").read_text().splitlines():
        name = json.loads(line)["file"]
        events.clear()
        result = await gateway.ingest((corpus / name).read_bytes(), "pipe", strict=True)
        kinds = [e.kind for e in events]
        if result.disposition == "ticket":
            ok = kinds[:1] == ["ticket_created"] and kinds.count("ticket_created") == 1
            ok = ok and events[0].ticket.number == int(result.ticket.rsplit("-", 1)[1])  # type: ignore[union-attr]
        elif result.disposition == "reply":
            ok = "message_added" in kinds and "ticket_created" not in kinds
        else:
            ok = kinds == []
        if not ok:
            wrong.append(f"{name}: {result.disposition} with events {kinds}")
        for event in events:
            if isinstance(event, TicketCreated) and event.acknowledge \
                    and not event.requester_undeliverable:
                acknowledged.add(event.ticket.id)
            for row in audit_values(event):
                expected_audit[_audit_key(row)] += 1
            for notice in notices(event, staff, runtime.settings):
                expected_notices[(notice.kind, notice.template, notice.to)] += 1
    assert not wrong, "\n".join(wrong)

    async with runtime.sessions() as session:
        audit_rows = (await session.execute(select(AuditEvent))).scalars().all()
        written = Counter(_audit_key(vars(row)) for row in audit_rows
                          if row.action not in ("ticket.threading", "ack.suppressed"))
        outbox = Counter((row.kind, row.template, row.to_addr) for row in (
            await session.execute(select(OutboxRow).where(
                OutboxRow.kind != "ack"))).scalars())
        acks = Counter((await session.execute(select(OutboxRow.ticket_id).where(
            OutboxRow.kind == "ack"))).scalars())
    held = {row.ticket_id for row in audit_rows if row.action == "ack.suppressed"}
    assert written == expected_audit
    assert outbox == expected_notices
    assert sum(expected_notices.values()) > 150
    # each acknowledgement an event asked for was queued once, or held back by a limit
    assert set(acks) | held == acknowledged and not set(acks) & held
    assert set(acks.values()) == {1} and len(acks) > 100


def _audit_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["ticket_id"], row["actor"], str(row["action"]),
            json.dumps(row["before"], sort_keys=True), json.dumps(row["after"], sort_keys=True),
            row["reason"])
