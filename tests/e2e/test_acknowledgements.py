"""Acknowledgements through the real gateway and worker: who gets one, and what is recorded.

Mail goes in by SMTP to the gateway this test starts; the worker sends to a real SMTP sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib
import pytest
from sqlalchemy import select

from helpdesk.directory import add_agent
from helpdesk.models import AuditEvent, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from responders.broker import WorkerOptions
from responders.service import run
from tests.conftest import make_settings

if TYPE_CHECKING:
    from tests.fixtures.smtp_sink import SmtpSink

pytest_plugins = ["tests.fixtures.smtp_sink"]

SUPPORT = "support@support.example.com"
BOB = "bob@support.example.com"
ADMIN = "admin@support.example.com"
FAST = WorkerOptions(lease=timedelta(seconds=10), poll_interval=0.05,
                     retry_base=timedelta(seconds=0.2), threads=2, max_in_flight=8)


@dataclass
class Desk:
    rt: Runtime
    port: int
    sink: SmtpSink

    async def send(self, sender: str, subject: str = "Printer on fire") -> None:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = SUPPORT
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg.set_content("It burns.\n")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=30) as smtp:
            errors, _ = await smtp.sendmail(sender, [SUPPORT], msg.as_bytes())
            assert not errors

    async def rows(self, model: type, *where: Any) -> list[Any]:
        async with self.rt.sessions() as session:
            return list((await session.execute(
                select(model).where(*where).order_by(model.id))).unique().scalars())

    async def settled(self, timeout: float = 15) -> list[OutboxRow]:
        """Every outbox row once none is waiting or in flight any more."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rows = await self.rows(OutboxRow)
            if all(r.status in ("sent", "failed") for r in rows):
                return rows
            assert asyncio.get_running_loop().time() < deadline, [
                (r.kind, r.status, r.last_error) for r in rows]
            await asyncio.sleep(0.1)


@pytest.fixture
async def desk(tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> AsyncIterator[Desk]:
    settings = make_settings(
        tmp_path, db_url, outbound={"host": "127.0.0.1", "port": smtp_sink.port},
        instance={"admin_email": ADMIN})
    rt = await Runtime.open(settings)
    async with rt.sessions() as session, session.begin():
        await add_agent(session, BOB, "Bob Builder")
    server = await start_smtp(make_gateway(rt), settings.smtp, port=0)
    stop = asyncio.Event()
    worker = asyncio.create_task(run(rt, stop, FAST))
    try:
        yield Desk(rt, server.sockets[0].getsockname()[1], smtp_sink)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
        server.close()
        await server.wait_closed()
        await rt.close()


async def test_an_agent_who_opens_a_ticket_gets_its_acknowledgement(desk: Desk) -> None:
    await desk.send(f"Bob Builder <{BOB}>", "My own laptop is broken")
    rows = await desk.settled()
    [ack] = [r for r in rows if r.kind == "ack"]
    assert (ack.status, ack.last_error) == ("sent", "")
    assert not [r for r in rows if r.kind == "admin_notice"]
    [mail] = await asyncio.to_thread(desk.sink.wait_for, lambda m: BOB in m.rcpt_tos
                                     and m.message["Auto-Submitted"] == "auto-replied", 15)
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None and "/t/" in str(body.get_content())


async def test_a_suppressed_acknowledgement_is_audited_on_its_ticket(desk: Desk) -> None:
    limit = desk.rt.settings.outbound.ack_limit_per_hour
    for n in range(limit + 1):
        await desk.send("Alice <alice@example.org>", f"Problem {n}")
    acks = [r for r in await desk.rows(OutboxRow) if r.kind == "ack"]
    assert len(acks) == limit
    [last] = await desk.rows(Ticket, Ticket.number == limit + 1)
    events = await desk.rows(AuditEvent, AuditEvent.ticket_id == last.id,
                             AuditEvent.action == "ack.suppressed")
    assert len(events) == 1
    assert "mailbox limit" in events[0].reason
    assert events[0].after == {"to": "alice@example.org"}
    earlier = await desk.rows(AuditEvent, AuditEvent.action == "ack.suppressed",
                              AuditEvent.ticket_id != last.id)
    assert earlier == []
