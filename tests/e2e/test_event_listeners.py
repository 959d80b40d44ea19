"""One writer: a listener and a notification rule added at start-up see every way in.

A deployment registers its own listener and its own notification rule once, on the
runtime; then mail by SMTP, the pipe's ingest, a real Dovecot mailbox, an agent's command
mail and the portal's reply form all reach them, because every one of them changes the
ticket through the one `TicketService` that emits the events.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from sqlalchemy import func, select

from helpdesk import audit
from helpdesk.config import Settings
from helpdesk.directory import add_agent
from helpdesk.events import MessageAdded, StatusChanged, TicketEvent
from helpdesk.links import Purpose
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import AuditEvent, Contact, OutboxRow, Ticket
from helpdesk.notify import Notice, Notifier, Participants
from helpdesk.runtime import Runtime
from helpdesk.tx import Tx
from mailgate.imap import ImapPoller
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from portal_lite.app import create_app
from tests.conftest import make_settings
from tests.fixtures.dovecot import DovecotServer
from tests.integration.test_imap import FAST, PROCESSED, Running, imap_config, in_folder, wait_until
from tests.integration.test_portal import GENEROUS, _client, _reply, _token

pytest_plugins = ["tests.fixtures.dovecot"]

SUPPORT = "support@support.example.com"
BOB = "bob@support.example.com"
SEEN = "test.listener_saw"


def mail(body: str, *, subject: str = "[TKT-000001] Printer on fire",
         sender: str = "Alice <alice@example.org>", to: str = SUPPORT,
         cc: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    if cc:
        msg["Cc"] = cc
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    return msg


def tell_watchers(event: TicketEvent, people: Participants, settings: Settings) -> list[Notice]:
    """The maintainer's rule from the issue: watchers hear of the requester side's messages
    and of status changes."""
    if isinstance(event, MessageAdded) and event.message is not None \
            and event.message.kind == "public" and not event.message.by_agent:
        return [Notice("watcher_copy", "agent_reply_notice", w) for w in people.watchers]
    if isinstance(event, StatusChanged):
        return [Notice("watcher_copy", "agent_status_changed", w) for w in people.watchers]
    return []


async def test_a_listener_and_a_rule_fire_for_smtp_pipe_imap_agent_mail_and_portal(
        tmp_path: Path, db_url: str, dovecot: DovecotServer) -> None:
    settings = make_settings(tmp_path, db_url, imap=[imap_config(dovecot)])
    rt = await Runtime.open(settings)
    kinds: list[str] = []

    async def listener(event: TicketEvent, tx: Tx) -> None:
        kinds.append(event.kind)  # and a row of its own, in the change's transaction
        await tx.add(AuditEvent, audit.values(ticket_id=event.ticket.id, actor=audit.SYSTEM,
                                              action=SEEN, at=event.at,
                                              after={"kind": event.kind}))

    rt.listen(listener)
    rt.listen(Notifier(rt, rules=[tell_watchers]))
    async with rt.sessions() as session, session.begin():
        bob = await add_agent(session, BOB, "Bob")
    gateway = make_gateway(rt)
    server = await start_smtp(gateway, settings.smtp, port=0)
    port = server.sockets[0].getsockname()[1]

    async def smtp(msg: EmailMessage, rcpt: str = SUPPORT) -> None:
        await aiosmtplib.send(msg, sender="someone@example.org", recipients=[rcpt],
                              hostname="127.0.0.1", port=port)

    async def counts() -> tuple[int, int]:
        async with rt.sessions() as session:
            copies = (await session.execute(select(func.count()).select_from(OutboxRow).where(
                OutboxRow.kind == "watcher_copy",
                OutboxRow.to_addr == "dave@example.org"))).scalar_one()
            seen = (await session.execute(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == SEEN))).scalar_one()
        return int(copies), int(seen)

    try:
        # SMTP: Alice opens the ticket with Dave on CC (a watcher), then writes again
        await smtp(mail("It burns.", subject="Printer on fire", cc="dave@example.org"))
        assert kinds[:1] == ["ticket_created"] and "watcher_added" in kinds
        before = await counts()
        await smtp(mail("Still burning."))
        after = await counts()
        assert after[0] == before[0] + 1 and after[1] > before[1], "SMTP"

        # the pipe: what `helpdesk ingest` runs with the mail on stdin
        before = after
        result = await gateway.ingest(mail("Smoke now.").as_bytes(), "pipe", strict=True)
        assert result.disposition == "reply"
        after = await counts()
        assert after[0] == before[0] + 1 and after[1] > before[1], "pipe"

        # IMAP: a real Dovecot mailbox, read by the poller
        before = after
        dovecot.deliver(mail("Flames now.").as_bytes())
        async with Running(ImapPoller(gateway, settings.imap[0], tuning=FAST)):
            await wait_until(in_folder(dovecot, PROCESSED, 1), 30, "the IMAP mail processed")
        after = await counts()
        assert after[0] == before[0] + 1 and after[1] > before[1], "IMAP"

        # agent commands: Bob's status command by mail, to his signed reply address
        before = after
        signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=bob.id)
        await smtp(mail("#status Pending\nWe are on it.", sender=f"Bob <{BOB}>", to=signed),
                   signed)
        after = await counts()
        assert after[0] == before[0] + 1 and after[1] > before[1], "agent commands"
        assert "status_changed" in kinds

        # the portal: Alice replies on her ticket's page
        before = after
        async with rt.sessions() as session:
            ticket_id, alice = (await session.execute(select(Ticket.id, Contact.id).join(
                Contact, Contact.id == Ticket.requester_id))).one()
        token = await _token(rt, Purpose.VIEW, ticket_id, alice)
        client: Any
        async with _client(create_app(rt, limits=GENEROUS)) as client:
            response: httpx.Response = await _reply(client, token, "From the portal.")
        assert response.status_code == 303
        after = await counts()
        # the reply, and the status change it makes (Pending -> Open): two copies
        assert after[0] == before[0] + 2 and after[1] > before[1], "portal"
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()
