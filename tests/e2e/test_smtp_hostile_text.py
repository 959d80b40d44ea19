"""Hostile text sent by a real SMTP client to the real receiver, on SQLite and PostgreSQL.

Issue 19, items 2 and 3 the way an attacker sends them: the 250 the client gets means a
ticket (surrogates stored as U+FFFD), or an ignored auto-reply (an undecodable charset in
one header does not hide ``Auto-Submitted``), never a quarantined mail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import select

from helpdesk.models import InboundSpool, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from tests.conftest import make_settings

MAIL = Path(__file__).resolve().parents[1] / "data" / "mail"
SUPPORT = "support@support.example.com"


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[Runtime, int]]:
    settings = make_settings(tmp_path, db_url)
    rt = await Runtime.open(settings)
    server = await start_smtp(make_gateway(rt), settings.smtp, port=0)
    try:
        yield rt, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


async def test_hostile_text_by_smtp_is_a_ticket_or_ignored_never_quarantined(
        served: tuple[Runtime, int]) -> None:
    rt, port = served
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as smtp:
        for name in ("hostile-surrogates.eml", "hostile-autoreply-charset.eml"):
            errors, reply = await smtp.sendmail("jane@example.org", [SUPPORT],
                                                (MAIL / name).read_bytes())
            assert not errors and reply.startswith("2."), reply
    async with rt.sessions() as session:
        spool = list((await session.execute(
            select(InboundSpool).order_by(InboundSpool.id))).scalars())
        tickets = list((await session.execute(select(Ticket))).unique().scalars())
        acks = list((await session.execute(
            select(OutboxRow.ticket_id).where(OutboxRow.kind == "ack"))).scalars())
    assert [(s.status, s.reason) for s in spool] == [
        ("ticket", "new ticket: no thread reference"),
        ("ignored", "auto_reply: Auto-Submitted: auto-replied"),
    ]
    assert [t.subject for t in tickets] == ["Order \ufffd broken\ufffd\ufffd\ufffd"]
    assert acks == [tickets[0].id]  # the person is acknowledged, the auto-reply is not
