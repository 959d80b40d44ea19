"""Hostile text in inbound mail through the real gateway, on SQLite and PostgreSQL.

Issue 19, items 2 and 3: text that decodes to lone surrogates or NULs, and charsets Python
knows but cannot decode with (``idna``, ``punycode``, ``undefined``), must neither lose the
mail to quarantine nor wipe the other headers, the requester, the body or the other
attachments. Each mail goes through `Gateway.ingest` as the MTA pipe delivers it and is
then read back from the database.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select

from helpdesk.models import Attachment, Contact, InboundSpool, Message, OutboxRow, Ticket, Watcher
from helpdesk.runtime import Runtime
from mailgate.ingest import IngestResult
from mailgate.service import make_gateway

MAIL = Path(__file__).resolve().parents[1] / "data" / "mail"
REPLACEMENT = "\ufffd"


async def _ingest(runtime: Runtime, name: str) -> IngestResult:
    return await make_gateway(runtime).ingest((MAIL / name).read_bytes(), "pipe", strict=True)


async def _ticket(runtime: Runtime, result: IngestResult) -> tuple[Ticket, list[Message]]:
    assert result.disposition == "ticket", result
    async with runtime.sessions() as session:
        spool = await session.get(InboundSpool, result.spool_id)
        assert spool is not None and spool.ticket_id is not None
        ticket = await session.get(Ticket, spool.ticket_id)
        assert ticket is not None
        messages = list((await session.execute(
            select(Message).where(Message.ticket_id == ticket.id))).unique().scalars())
        return ticket, messages


async def _outbox(runtime: Runtime) -> list[OutboxRow]:
    async with runtime.sessions() as session:
        return list((await session.execute(select(OutboxRow))).scalars())


async def test_surrogates_and_nuls_are_stored_replaced_not_quarantined(runtime: Runtime) -> None:
    result = await _ingest(runtime, "hostile-surrogates.eml")
    ticket, messages = await _ticket(runtime, result)
    assert ticket.subject.startswith(f"Order {REPLACEMENT} broken")
    assert ticket.requester.email == "jane@example.org"
    assert ticket.requester.name == f"Jane {REPLACEMENT}Doe"
    (message,) = messages
    assert f"The printer {REPLACEMENT} says hello" in message.text
    assert "\x00" not in message.text
    async with runtime.sessions() as session:
        watchers = {w.contact.email: w.contact.name for w in (await session.execute(
            select(Watcher).where(Watcher.ticket_id == ticket.id))).unique().scalars()}
        files = list((await session.execute(select(Attachment).where(
            Attachment.message_id == message.id).order_by(Attachment.id))).scalars())
    assert watchers == {"ben@example.net": f"Ben {REPLACEMENT}",
                        "eve@example.net": "Eve Null"}
    assert [f.filename for f in files] == [f"invoice{REPLACEMENT}.pdf", "raw\ufffd\ufffd\ufffd.bin"]
    assert files[1].content_type == f"application/x-{REPLACEMENT}{REPLACEMENT}"


async def test_a_quarantined_mail_with_surrogates_becomes_a_ticket_on_retry(
        runtime: Runtime) -> None:
    raw = (MAIL / "hostile-surrogates.eml").read_bytes()
    async with runtime.sessions() as session, session.begin():
        row = InboundSpool(dedupe_key="quarantined-before-the-fix", message_id=None,
                           sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), via="smtp",
                           status="quarantined", reason="internal error: UnicodeEncodeError",
                           raw=raw)
        session.add(row)
        await session.flush()
        spool_id = row.id
    result = await make_gateway(runtime).retry(spool_id)
    assert result.disposition == "ticket", result


async def test_an_auto_reply_with_an_undecodable_charset_stays_ignored(runtime: Runtime) -> None:
    result = await _ingest(runtime, "hostile-autoreply-charset.eml")
    assert (result.disposition, result.reason) == (
        "ignored", "auto_reply: Auto-Submitted: auto-replied")
    assert await _outbox(runtime) == []


async def test_list_mail_with_an_undecodable_charset_stays_ignored(runtime: Runtime) -> None:
    result = await _ingest(runtime, "hostile-list-charset.eml")
    assert result.disposition == "ignored" and result.reason.startswith("list: list-id"), result
    assert await _outbox(runtime) == []


async def test_our_looping_mail_with_an_undecodable_charset_stays_ignored(
        runtime: Runtime) -> None:
    instance = runtime.settings.instance.id
    raw = (b"From: Support <support@support.example.com>\nTo: jane@example.org\n"
           b"Subject: =?idna?Q?=FF?= [TKT-000001] Re: hi\nX-Helpdesk-Loop: "
           + instance.encode() + b"\nMessage-ID: <loop-1@example.org>\n\nAnswer.\n")
    result = await make_gateway(runtime).ingest(raw, "pipe", strict=True)
    assert (result.disposition, result.reason) == (
        "ignored", f"loop: X-Helpdesk-Loop: {instance}")
    assert await _outbox(runtime) == []


async def test_an_undecodable_charset_in_from_keeps_the_requester(runtime: Runtime) -> None:
    ticket, _ = await _ticket(runtime, await _ingest(runtime, "hostile-from-charset.eml"))
    assert ticket.requester.email == "jane@example.org"
    assert ticket.requester.name.endswith("Jane")
    async with runtime.sessions() as session:
        assert [c.email for c in (await session.execute(select(Contact))).scalars()] == [
            "jane@example.org"]


async def test_an_undecodable_charset_in_a_body_part_keeps_the_text(runtime: Runtime) -> None:
    _, (message,) = await _ticket(runtime, await _ingest(runtime, "hostile-body-charset.eml"))
    assert "machine is broken, please send a technician." in message.text
    assert message.html is not None and "please send a technician" in message.html


async def test_an_undecodable_filename_keeps_every_attachment(runtime: Runtime) -> None:
    _, (message,) = await _ticket(runtime, await _ingest(runtime, "hostile-filename-charset.eml"))
    assert message.text.strip() == "Three files attached."
    async with runtime.sessions() as session:
        files = list((await session.execute(select(Attachment).where(
            Attachment.message_id == message.id).order_by(Attachment.id))).scalars())
    assert [(f.filename, f.content_type, f.size) for f in files] == [
        ("bad\u00ff.pdf", "application/pdf", 9),
        ("\u00ff\u00fe.pdf", "application/pdf", 9),  # unusable charset: UTF-8, else cp1252
        ("report.csv", "text/csv", 7),
    ]


async def test_an_over_long_fallback_sender_address_is_not_taken(runtime: Runtime) -> None:
    long_address = b"x@" + b"sub." * 70 + b"example.org"  # 293 characters: not valid
    raw = (b"Return-Path: <" + long_address + b">\nTo: support@support.example.com\n"
           b"Subject: no From\nMessage-ID: <no-from-1@example.org>\n\nHello.\n")
    result = await make_gateway(runtime).ingest(raw, "pipe", strict=True)
    ticket, _ = await _ticket(runtime, result)
    assert ticket.requester.email == "unknown-sender@invalid"
