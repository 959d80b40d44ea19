"""Hostile inbound mail cannot add headers, recipients or a body to the mail we send.

Real SMTP in (the gateway on port 0, an aiosmtplib client), the real worker (relay, Dramatiq
on the in-memory broker, the composer, aiosmtplib) and real SMTP out (the sink). Each mail
carries encoded words that decode to CR/LF, once or only on a second decoding (an encoded
word inside an encoded word), in the Subject, the From display name or the Message-ID our
acknowledgement and the agent's notice echo in In-Reply-To and References.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import aiosmtplib
import pytest

from helpdesk.directory import add_agent
from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from responders.broker import WorkerOptions
from responders.service import run
from tests.conftest import make_settings

if TYPE_CHECKING:
    from tests.fixtures.smtp_sink import ReceivedMessage, SmtpSink

pytest_plugins = ["tests.fixtures.smtp_sink"]

SUPPORT = "support@support.example.com"
ALICE = "alice@example.org"
BOB = "bob@support.example.com"
FAST = WorkerOptions(lease=timedelta(seconds=10), poll_interval=0.05,
                     retry_base=timedelta(seconds=0.2), threads=2, max_in_flight=8)
EXPECTED = {"from", "to", "subject", "date", "message-id", "reply-to", "x-helpdesk-ticket",
            "x-helpdesk-loop", "auto-submitted", "x-auto-response-suppress", "mime-version",
            "content-type"}


def nested(inner: str) -> str:
    """An encoded word whose decoded text is itself an encoded word."""
    return "=?utf-8?b?" + base64.b64encode(inner.encode()).decode() + "?="


HOSTILE = {
    "subject-crlf": {"Subject": "=?utf-8?q?hi=0D=0ABcc:_evil@example.org?="},
    "subject-nested": {"Subject": nested("=?utf-8?q?x=0D=0ABcc:_evil@example.org?=")},
    "subject-ends-headers": {
        "Subject": nested("=?utf-8?q?x=0D=0A=0D=0AYour_password_expired?=")},
    "subject-separators": {"Subject": "=?utf-8?q?a=E2=80=A8Bcc:_evil@example.org=C2=85b?="},
    "name-crlf": {"From": "=?utf-8?q?Al=0D=0ABcc=3A_evil=40example=2Eorg?= <alice@example.org>"},
    "name-nested": {"From": nested("=?utf-8?q?Al=0D=0ABcc=3A_evil=40example=2Eorg?=")
                    + " <alice@example.org>"},
    "message-id": {"Message-ID": "<a@=?utf-8?q?b=0D=0ABcc:_evil=40example.org?=>"},
    "message-id-nested": {"Message-ID": "<=?utf-8?q?b=0D=0ABcc:_c?=@example.org>"},
}


def hostile_mail(headers: dict[str, str]) -> bytes:
    values = {"From": f"Alice <{ALICE}>", "To": SUPPORT, "Subject": "Printer on fire",
              "Message-ID": "<hostile-1@example.org>",
              "Date": "Mon, 23 Nov 2026 10:00:00 +0000", **headers}
    head = "".join(f"{name}: {value}\r\n" for name, value in values.items())
    return (head + "\r\nIt burns.\r\n").encode()


@pytest.fixture
async def rt(tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> AsyncIterator[Runtime]:
    settings = make_settings(
        tmp_path, db_url, broker={"url": "memory://"},
        outbound={"host": "127.0.0.1", "port": smtp_sink.port},
        portal={"secret_key": ["e2e-secret"], "base_url": "http://portal.test"})
    runtime = await Runtime.open(settings)
    async with runtime.sessions() as session, session.begin():
        await add_agent(session, BOB, "Bob")
    try:
        yield runtime
    finally:
        await runtime.close()


@contextlib.asynccontextmanager
async def gateway(rt: Runtime) -> AsyncIterator[int]:
    server = await start_smtp(make_gateway(rt), rt.settings.smtp, port=0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def worker(rt: Runtime) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(rt, stop, FAST))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def header_block(m: ReceivedMessage) -> EmailMessage:
    """The headers of the top level as a reader sees them: the bytes up to the first blank line."""
    head = m.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    parsed = email.message_from_bytes(head, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_only_our_headers(m: ReceivedMessage) -> None:
    head = header_block(m)
    names = {k.lower() for k in head}
    assert names - {"in-reply-to", "references"} == EXPECTED, m.raw[:1500]
    assert len(head.keys()) == len(names), m.raw[:1500]  # no header twice
    assert head["X-Helpdesk-Loop"] == "helpdesk-1"
    for name in ("Subject", "From", "To", "In-Reply-To", "References"):
        for value in head.get_all(name) or []:
            assert not any(c in str(value) for c in "\r\n\x00\x85\u2028\u2029"), (name, value)
    for line in m.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert not line.lower().startswith(b"bcc"), m.raw[:1500]
        assert len(line) <= 998


@pytest.mark.parametrize("attack", sorted(HOSTILE))
async def test_hostile_headers_add_nothing_to_the_acknowledgement_or_the_agent_notice(
        rt: Runtime, smtp_sink: SmtpSink, attack: str) -> None:
    async with gateway(rt) as port, aiosmtplib.SMTP(hostname="127.0.0.1", port=port,
                                                    timeout=30) as smtp:
        errors, _ = await smtp.sendmail(ALICE, [SUPPORT], hostile_mail(HOSTILE[attack]))
        assert not errors
    async with worker(rt):
        await asyncio.to_thread(smtp_sink.wait_for, lambda m: True, 30, 2)
        await asyncio.sleep(0.5)  # anything else queued would arrive by now
    by_rcpt = {m.rcpt_tos: m for m in smtp_sink.messages}
    assert set(by_rcpt) == {(ALICE,), (BOB,)}, [m.rcpt_tos for m in smtp_sink.messages]
    ack, notice = by_rcpt[(ALICE,)], by_rcpt[(BOB,)]
    assert_only_our_headers(ack)
    assert_only_our_headers(notice)
    assert header_block(ack)["Auto-Submitted"] == "auto-replied"
    assert header_block(notice)["Auto-Submitted"] == "auto-generated"
    assert str(header_block(ack)["To"]) == ALICE
    assert str(header_block(notice)["To"]) == BOB
    assert str(header_block(ack)["Subject"]).startswith("[TKT-000001] ")
    for m in (ack, notice):
        body = m.message.get_body(preferencelist=("plain",))
        assert body is not None and "TKT-000001" in str(body.get_content())
