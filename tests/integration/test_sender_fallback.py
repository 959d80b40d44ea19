"""A From that is no one mailbox: the requester comes from Reply-To and keeps the name."""

from __future__ import annotations

from sqlalchemy import select
from structlog.testing import capture_logs

from helpdesk.models import Contact, Ticket
from helpdesk.notify import Notifier
from helpdesk.runtime import Runtime
from mailgate.ingest import Gateway

RAW = (b'From: "your secret past" <power quadrant system@example.com>\r\n'
       b"Reply-To: real.person@example.org\r\nTo: support@support.example.com\r\n"
       b"Subject: Who am I\r\nMessage-ID: <fallback-1@example.org>\r\n\r\nGuess.\r\n")


async def test_the_requester_falls_back_to_reply_to_and_keeps_the_name(runtime: Runtime) -> None:
    with capture_logs() as logs:
        result = await Gateway(runtime, listeners=[Notifier(runtime)]).ingest(RAW, "smtp")
    assert result.disposition == "ticket"
    async with runtime.sessions() as session:
        ticket = (await session.execute(select(Ticket))).unique().scalar_one()
        requester = await session.get(Contact, ticket.requester_id)
    assert requester is not None and requester.email == "real.person@example.org"
    assert requester.name == "your secret past"
    [said] = [e for e in logs if e["event"] == "ingest.sender_fallback" and "original" in e]
    assert "power quadrant system@example.com" in said["original"]
