"""The SMTP receiver end to end: real SMTP client, real receiver, real database (both kinds)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, select

from helpdesk.audit import Actor
from helpdesk.directory import add_agent
from helpdesk.mailtokens import make_message_id, make_reply_address
from helpdesk.models import AuditEvent, Contact, InboundSpool, Message, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from mailgate import _spool
from mailgate.replies import R451_TEMPFAIL, R550_RELAY, R552_TOO_BIG
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from tests.conftest import make_settings

SUPPORT = "support@support.example.com"


@dataclass
class Gate:
    rt: Runtime
    port: int

    async def send(self, msg: EmailMessage | bytes, *, sender: str = "alice@example.org",
                   rcpts: list[str] | None = None) -> tuple[int, str]:
        raw = msg if isinstance(msg, bytes) else msg.as_bytes()
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=30) as smtp:
            errors, reply = await smtp.sendmail(sender, rcpts or [SUPPORT], raw)
            assert not errors
            return 250, reply

    async def tickets(self) -> list[Ticket]:
        async with self.rt.sessions() as session:
            return list((await session.execute(
                select(Ticket).order_by(Ticket.number))).unique().scalars())

    async def count(self, model: type, *where: object) -> int:
        async with self.rt.sessions() as session:
            return int((await session.execute(
                select(func.count()).select_from(model).where(*where))).scalar_one())

    async def raw(self, spool_id: int) -> bytes | None:
        """A spool row's raw bytes, from the row or the blob store."""
        async with self.rt.sessions() as session:
            return await _spool.raw_message(session, self.rt.store, spool_id)

    async def spool(self) -> list[InboundSpool]:
        async with self.rt.sessions() as session:
            return list((await session.execute(
                select(InboundSpool).order_by(InboundSpool.id))).scalars())


async def _start(tmp_path: Path, db_url: str, **sections: dict) -> AsyncIterator[Gate]:  # type: ignore[type-arg]
    settings = make_settings(tmp_path, db_url, **sections)
    rt = await Runtime.open(settings)
    server = await start_smtp(make_gateway(rt), settings.smtp, port=0)
    try:
        yield Gate(rt, server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


@pytest.fixture
async def gate(tmp_path: Path, db_url: str) -> AsyncIterator[Gate]:
    async for g in _start(tmp_path, db_url, smtp={"max_message_bytes": 200_000},
                          queues=[{"address": "billing@support.example.com",
                                   "category": "billing"}]):
        yield g


def mail(subject: str = "Printer on fire", body: str = "It burns.\n", *,
         sender: str = "Alice <alice@example.org>", to: str = SUPPORT,
         **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


# -- item 2: the receiver -------------------------------------------------------------------

async def test_new_mail_becomes_a_ticket_before_250_is_answered(gate: Gate) -> None:
    _, reply = await gate.send(mail())
    assert "Queued as TKT-000001" in reply
    [ticket] = await gate.tickets()
    assert ticket.subject == "Printer on fire"
    assert ticket.requester.email == "alice@example.org" and ticket.requester.name == "Alice"
    assert await gate.count(OutboxRow, OutboxRow.kind == "ack") == 1


async def test_foreign_recipients_are_refused_so_we_are_no_open_relay(gate: Gate) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gate.port) as smtp:
        await smtp.mail("spammer@example.net")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
            await smtp.rcpt("victim@elsewhere.example")
        assert f"{info.value.code} {info.value.message}" == R550_RELAY
        reply = await smtp.rcpt("anything@support.example.com")
        assert reply.code == 250
    assert await gate.tickets() == []


async def test_size_limit_is_announced_and_enforced_with_552(gate: Gate) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gate.port) as smtp:
        await smtp.ehlo()
        assert smtp.esmtp_extensions["size"] == "200000"
        with pytest.raises(aiosmtplib.SMTPResponseException) as info:
            await smtp.sendmail("alice@example.org", [SUPPORT],
                                mail(body="x" * 300_000).as_bytes())
        assert f"{info.value.code} {info.value.message}" == R552_TOO_BIG
    assert await gate.tickets() == []


async def test_answers_451_when_the_database_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "helpdesk.db"
    async for g in _start(tmp_path, f"sqlite+aiosqlite:///{db}",
                          database={"busy_timeout_ms": 200}):
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(aiosmtplib.SMTPDataError) as info:
                await g.send(mail())
            assert f"{info.value.code} {info.value.message}" == R451_TEMPFAIL
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await g.send(mail("after the lock"))  # the sender's retry succeeds
        assert [t.subject for t in await g.tickets()] == ["after the lock"]


async def test_answers_451_and_keeps_no_row_when_the_blob_store_cannot_sync(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw mails in the blob store are synced once per batch, before its commit: no sync,
    no row, no 250. (Every mail goes there here; by default only large ones do.)"""
    def broken() -> None:
        raise OSError(28, "No space left on device")

    async for gate in _start(tmp_path, db_url, storage={"raw_in_database_bytes": 0}):
        monkeypatch.setattr(gate.rt.store, "sync", broken)
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await gate.send(mail())
        assert f"{info.value.code} {info.value.message}" == R451_TEMPFAIL
        assert await gate.tickets() == [] and await gate.spool() == []
        monkeypatch.undo()
        await gate.send(mail("after the disk was freed"))  # the sender's retry succeeds
        assert [t.subject for t in await gate.tickets()] == ["after the disk was freed"]


async def test_queues_give_their_default_category(gate: Gate) -> None:
    await gate.send(mail("Invoice wrong", to="billing@support.example.com"),
                    rcpts=["billing@support.example.com"])
    [ticket] = await gate.tickets()
    assert (ticket.queue, ticket.category) == ("billing@support.example.com", "billing")


async def test_one_mail_to_two_of_our_addresses_makes_one_ticket(gate: Gate) -> None:
    msg = mail(to=f"{SUPPORT}, billing@support.example.com")
    await gate.send(msg, rcpts=[SUPPORT, "billing@support.example.com"])
    await gate.send(msg, rcpts=["billing@support.example.com"])  # split delivery by an MTA
    assert len(await gate.tickets()) == 1


# -- item 4: classify -----------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Auto_Submitted": "auto-replied"},
    {"X_Autoreply": "yes"},
    {"X_Autorespond": "Out of office"},
    {"X_Auto_Response_Suppress": "All"},
    {"Precedence": "bulk"},
    {"Precedence": "junk"},
    {"Precedence": "list"},
    {"List_Id": "<announce.lists.example.org>"},
    {"List_Unsubscribe": "<mailto:leave@lists.example.org>"},
    {"X_Helpdesk_Loop": "helpdesk-1"},
])
async def test_automatic_mail_makes_no_ticket_and_no_response(gate: Gate,
                                                              headers: dict[str, str]) -> None:
    await gate.send(mail("Automatic", **headers))
    assert await gate.tickets() == []
    [row] = await gate.spool()
    assert row.status == "ignored" and row.reason
    assert await gate.count(OutboxRow) == 0


async def test_bounce_marks_the_bounced_recipient_undeliverable(gate: Gate) -> None:
    await gate.send(mail(sender="bob@example.com"))
    dsn = (
        b"From: MAILER-DAEMON@mx.example.com\r\nTo: support@support.example.com\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\n"
        b"Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--B--\r\n")
    await gate.send(dsn, sender="")
    assert len(await gate.tickets()) == 1
    async with gate.rt.sessions() as session:
        bob = (await session.execute(
            select(Contact).where(Contact.email == "bob@example.com"))).scalar_one()
    assert bob.is_undeliverable


@pytest.mark.parametrize(("name", "bounced"), [
    ("bounce-exchange-delivery-failure.eml", "bob@corp.example"),
    ("bounce-list-loop-alert.eml", "staff-l@lists.example.edu"),
    ("bounce-mailer-daemon-plain.eml", "carol@partner.example"),
])
async def test_a_bounce_without_a_delivery_report_is_recognised(gate: Gate, name: str,
                                                                bounced: str) -> None:
    """Issue 21 item 8: Exchange, a list server's loop alert and a plain-text daemon notice."""
    await gate.send(mail(sender=bounced))
    raw = (Path(__file__).parents[1] / "data" / "mail" / name).read_bytes()
    await gate.send(raw, sender="")
    assert len(await gate.tickets()) == 1
    async with gate.rt.sessions() as session:
        contact = (await session.execute(
            select(Contact).where(Contact.email == bounced))).scalar_one()
        spool = (await session.execute(
            select(InboundSpool).order_by(InboundSpool.id.desc()).limit(1))).scalar_one()
    assert contact.is_undeliverable
    assert spool.status == "ignored" and spool.reason.startswith("bounce:")


# -- items 6 and 7: threading and authorisation ---------------------------------------------

async def test_subject_token_from_the_requester_threads_in_any_spelling(gate: Gate) -> None:
    await gate.send(mail())
    for subject in ("Re: [TKT-000001] Printer on fire", "AW: tkt-1 still burning",
                    "SV: Antw: [Tkt-00001] more", "返信: [TKT-000001] ok"):
        await gate.send(mail(subject, "more smoke\n"))
    assert len(await gate.tickets()) == 1
    assert await gate.count(Message) == 5


async def test_a_stranger_cannot_add_to_a_ticket_by_its_token(gate: Gate) -> None:
    await gate.send(mail())
    await gate.send(mail("Re: [TKT-000001] Printer on fire", "I am someone else\n",
                         sender="mallory@evil.example"))
    tickets = await gate.tickets()
    assert [t.number for t in tickets] == [1, 2]
    assert tickets[1].requester.email == "mallory@evil.example"
    async with gate.rt.sessions() as session:
        reasons = list((await session.execute(select(AuditEvent.reason).where(
            AuditEvent.ticket_id == tickets[1].id, AuditEvent.action == "ticket.threading")
        )).scalars())
    assert reasons and "not" in reasons[0]


async def test_colleague_of_the_same_organization_may_reply(gate: Gate) -> None:
    await gate.send(mail())
    await gate.send(mail("Re: [TKT-000001] x", "me too\n", sender="carol@example.org"))
    assert len(await gate.tickets()) == 1


async def test_cc_of_the_first_mail_becomes_watcher_and_may_reply(gate: Gate) -> None:
    await gate.send(mail(Cc="dave@partner.example"))
    await gate.send(mail("Re: [TKT-000001] x", "hi\n", sender="dave@partner.example"))
    assert len(await gate.tickets()) == 1


async def test_reply_to_our_signed_message_id_threads_without_a_token(gate: Gate) -> None:
    await gate.send(mail())
    mid = make_message_id(1, instance_id="helpdesk-1", secret="test-secret",
                          domain="support.example.com")
    await gate.send(mail("a subject without token", "threaded\n", In_Reply_To=mid))
    assert len(await gate.tickets()) == 1
    forged = mid.replace("@", "x@")
    await gate.send(mail("another", "forged\n", sender="x@other.example", In_Reply_To=forged))
    assert len(await gate.tickets()) == 2


async def test_reply_to_known_message_id_of_the_ticket_threads(gate: Gate) -> None:
    first = mail()
    await gate.send(first)
    await gate.send(mail("no token", "ref\n", In_Reply_To=str(first["Message-ID"])))
    assert len(await gate.tickets()) == 1


@pytest.mark.parametrize("strangers", [0, 15, 16, 40])
async def test_a_known_message_id_among_many_references_threads(gate: Gate,
                                                                strangers: int) -> None:
    """Up to 16 references take a prebuilt statement, more the general one: both find it."""
    first = mail()
    await gate.send(first)
    others = [f"<unknown{i}@elsewhere.example>" for i in range(strangers)]
    references = " ".join([*others[: strangers // 2], str(first["Message-ID"]),
                           *others[strangers // 2 :]])
    await gate.send(mail("no token", "ref\n", References=references))
    assert len(await gate.tickets()) == 1


async def test_signed_plus_address_threads(gate: Gate) -> None:
    await gate.send(mail())
    plus = make_reply_address(SUPPORT, 1, secret="test-secret")
    await gate.send(mail("whatever", "via plus\n", to=plus), rcpts=[plus])
    assert len(await gate.tickets()) == 1
    bad = plus[:-25] + "aaaaaaaaaaaaaaaa@support.example.com"
    await gate.send(mail("whatever", "forged plus\n", sender="x@y.example", to=bad), rcpts=[bad])
    assert len(await gate.tickets()) == 2


async def test_reply_reopens_pending_and_closed_gives_a_followup(gate: Gate) -> None:
    await gate.send(mail())
    async with gate.rt.sessions() as session, session.begin():
        svc = TicketService(session, gate.rt.settings)
        ticket = await svc.get(1)
        await svc.set_status(ticket, "Pending", Actor("cli", "test"))
    await gate.send(mail("Re: [TKT-000001] x", "answer\n"))
    [ticket] = await gate.tickets()
    assert ticket.status == "Open"
    async with gate.rt.sessions() as session, session.begin():
        svc = TicketService(session, gate.rt.settings)
        await svc.set_status(await svc.get(1), "Closed", Actor("cli", "test"))
    await gate.send(mail("Re: [TKT-000001] x", "it is back\n"))
    tickets = await gate.tickets()
    assert len(tickets) == 2 and tickets[1].followup_of_id == tickets[0].id


async def test_agent_reply_by_mail_is_a_public_reply_and_first_response(gate: Gate) -> None:
    await gate.send(mail())
    async with gate.rt.sessions() as session, session.begin():
        agent = await add_agent(session, "bob@support.example.com", "Bob")
    # Authenticated by the agent's own signed reply address, as agent notifications carry.
    signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=agent.id)
    await gate.send(mail("Re: [TKT-000001] Printer on fire", "Unplug it.\n",
                         sender="Bob <bob@support.example.com>", to=signed), rcpts=[signed])
    [ticket] = await gate.tickets()
    assert ticket.first_response_at is not None


# -- item 9: idempotency and quarantine ------------------------------------------------------

async def test_same_message_twice_is_one_entry(gate: Gate) -> None:
    msg = mail()
    await gate.send(msg)
    _, reply = await gate.send(msg)
    assert len(await gate.tickets()) == 1 and await gate.count(Message) == 1
    assert reply.startswith("2.0.0")


async def test_reused_message_id_with_other_content_is_kept(gate: Gate) -> None:
    a = mail("first")
    b = mail("second", "different body\n")
    b.replace_header("Message-ID", str(a["Message-ID"]))
    await gate.send(a)
    await gate.send(b)
    assert len(await gate.tickets()) == 2


async def test_mail_without_any_sender_still_makes_a_ticket_and_gets_no_mail(gate: Gate) -> None:
    await gate.send(b"Subject: no sender at all\r\nMessage-ID: <q1@x.example>\r\n\r\nbody\r\n",
                    sender="")
    [ticket] = await gate.tickets()
    assert ticket.requester.email == "unknown-sender@invalid"
    assert ticket.requester.is_undeliverable
    assert await gate.count(OutboxRow, OutboxRow.kind == "ack") == 0


async def test_envelope_sender_is_the_last_resort_requester(gate: Gate) -> None:
    await gate.send(b"Subject: no from header\r\n\r\nbody\r\n", sender="bob@example.com")
    [ticket] = await gate.tickets()
    assert ticket.requester.email == "bob@example.com"


async def test_internal_failure_quarantines_the_raw_mail_and_retry_replays_it(gate: Gate
                                                                              ) -> None:
    from mailgate.ingest import Gateway

    async def explode(event: object, tx: object) -> None:
        raise RuntimeError("a bug in a listener")

    raw = mail("will fail once").as_bytes()
    result = await Gateway(gate.rt, listeners=[explode]).ingest(raw, "smtp")
    assert result.disposition == "quarantined" and "RuntimeError" in result.reason
    [row] = await gate.spool()
    assert row.status == "quarantined" and await gate.raw(row.id) == raw
    assert await gate.tickets() == []  # the failed transaction left nothing half-done
    retried = await make_gateway(gate.rt).retry(row.id)
    assert retried.disposition == "ticket"
    assert [t.subject for t in await gate.tickets()] == ["will fail once"]
    assert [r.status for r in await gate.spool()] == ["replayed", "ticket"]
    again = await make_gateway(gate.rt).retry(row.id)
    assert again.disposition == "duplicate" and len(await gate.tickets()) == 1


# -- item 2: STARTTLS; item 8: routing rules -------------------------------------------------

def _self_signed(tmp_path: Path) -> tuple[str, str]:
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


async def _starttls_offered_and_required(tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}"
    async for g in _start(tmp_path, url, smtp={"tls_cert": cert, "tls_key": key,
                                                "require_tls": True}):
        client_ctx = ssl.create_default_context(cafile=cert)
        client_ctx.check_hostname = False
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=g.port, start_tls=False) as smtp:
            await smtp.ehlo()
            assert smtp.supports_extension("starttls")
            with pytest.raises(aiosmtplib.SMTPResponseException) as info:
                await smtp.mail("alice@example.org")
            assert info.value.code == 530  # must issue STARTTLS first
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=g.port, start_tls=False,
                                   tls_context=client_ctx) as smtp:
            await smtp.starttls()
            await smtp.sendmail("alice@example.org", [SUPPORT], mail("over TLS").as_bytes())
        assert [t.subject for t in await g.tickets()] == ["over TLS"]


async def test_starttls_is_offered_with_a_certificate_and_can_be_required(tmp_path: Path) -> None:
    await _starttls_offered_and_required(tmp_path)


def test_starttls_works_on_uvloop(tmp_path: Path) -> None:
    """The daemon runs on uvloop (helpdesk/eventloop.py), and aiosmtpd's STARTTLS puts
    asyncio's own SSL protocol over the loop's transport: the same exchange there."""
    import uvloop

    uvloop.run(_starttls_offered_and_required(tmp_path))


async def test_without_a_certificate_no_starttls_is_offered(gate: Gate) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gate.port, start_tls=False) as smtp:
        await smtp.ehlo()
        assert not smtp.supports_extension("starttls")


async def test_routing_rules_first_match_wins_and_disabled_rules_are_skipped(
        tmp_path: Path, db_url: str) -> None:
    rules = [
        {"name": "off", "enabled": False, "subject": "outage", "priority": "low"},
        {"name": "outage", "match": "regex", "subject": "(outage|down)",
         "category": "technical", "priority": "urgent", "tags": ["outage"],
         "assignee": "oncall@support.example.com"},
        {"name": "also outage", "subject": "outage", "priority": "high"},
        {"name": "vip", "sender": "@bigcorp.example", "body": "contract", "tags": ["vip"]},
    ]
    async for g in _start(tmp_path, db_url, routing=rules):
        async with g.rt.sessions() as session, session.begin():
            await add_agent(session, "oncall@support.example.com", "On call")
        await g.send(mail("Site is DOWN"))
        await g.send(mail("Question", "about our contract\n", sender="ceo@bigcorp.example"))
        await g.send(mail("Hello", "nothing special\n", sender="x@elsewhere.example"))
        first, second, third = await g.tickets()
        assert (first.category, first.priority) == ("technical", "urgent")
        assert first.assignee is not None and first.assignee.email == "oncall@support.example.com"
        async with g.rt.sessions() as session:
            svc = TicketService(session, g.rt.settings)
            assert await svc.tags(first) == ["outage"]
            assert await svc.tags(second) == ["vip"]
            assert await svc.tags(third) == []
        assert (third.category, third.priority) == ("general", "normal")
