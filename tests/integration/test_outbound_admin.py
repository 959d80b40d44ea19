"""Admin notices that would loop back to us stay visible; the EHLO name we give is configurable."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from helpdesk import outbox, outbox_ops
from helpdesk.config import OutboundSettings
from helpdesk.models import OutboxRow
from helpdesk.runtime import Runtime
from responders.actors import ADMIN_NOTICE, deliver_row
from responders.broker import WorkerOptions
from responders.compose import Composer
from responders.send import deliver
from tests.conftest import make_settings
from tests.fixtures.smtp_sink import SmtpSink

OPTIONS = WorkerOptions(lease=timedelta(seconds=10), poll_interval=0.05,
                        retry_base=timedelta(seconds=0.2), threads=1, max_in_flight=4)


async def _runtime(tmp_path: Path, db_url: str, sink: SmtpSink, admin: str,
                   **sections: dict) -> Runtime:  # type: ignore[type-arg]
    settings = make_settings(tmp_path, db_url, instance={"admin_email": admin},
                             outbound={"host": "127.0.0.1", "port": sink.port}, **sections)
    return await Runtime.open(settings)


async def _send_admin_notice(rt: Runtime) -> OutboxRow:
    async with rt.sessions() as session, session.begin():
        row = await outbox.enqueue(
            session, kind=ADMIN_NOTICE, template="admin_delivery_failed",
            to=[rt.settings.instance.admin_email], instance_id=rt.settings.instance.id,
            secret=rt.secrets[-1], domain=rt.mail_domain, at=rt.clock(),
            context={"row_id": 1, "row_kind": "ack", "recipients": ["alice@example.org"],
                     "message_id": "<x@example.org>", "error": "550 no such user",
                     "subject": "Printer"})
        row_id = row.id
    async with rt.sessions() as session, session.begin():
        await outbox_ops.claim_due(session, now=rt.clock(), lease=OPTIONS.lease)
    composer = Composer.from_settings(rt.settings, rt.clock)
    assert await deliver_row(rt, row_id, OPTIONS, composer) == "sent"
    async with rt.sessions() as session:
        return (await session.execute(select(OutboxRow).where(OutboxRow.id == row_id))
                ).scalar_one()


async def test_admin_notice_to_our_own_domain_is_sent_and_marked_in_the_outbox(
        tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    rt = await _runtime(tmp_path, db_url, smtp_sink, "admin@support.example.com")
    try:
        row = await _send_admin_notice(rt)
    finally:
        await rt.close()
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("admin@support.example.com",)]
    assert row.status == "sent"
    assert row.last_error.startswith("sent, but may be lost") and "own loop" in row.last_error


@pytest.mark.parametrize("sections", [
    {"agents": [{"email": "admin@support.example.com", "name": "Admin"}]},
    {"smtp": {"local_parts": ["support", "billing"]}},
])
async def test_admin_notice_routed_elsewhere_carries_no_note(
        tmp_path: Path, db_url: str, smtp_sink: SmtpSink, sections: dict) -> None:  # type: ignore[type-arg]
    rt = await _runtime(tmp_path, db_url, smtp_sink, "admin@support.example.com", **sections)
    try:
        row = await _send_admin_notice(rt)
    finally:
        await rt.close()
    assert row.status == "sent" and row.last_error == ""


class _HeloRecorder:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.names.append(str(session.host_name))
        return "250 OK"


@pytest.mark.parametrize("ehlo_name", ["helpdesk.example.net", ""])
async def test_the_ehlo_name_is_configurable(ehlo_name: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recorder = _HeloRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "s@example.org", "r@example.org", "hi"
        msg.set_content("hello")
        settings = OutboundSettings(host="127.0.0.1", port=port, ehlo_name=ehlo_name)
        await deliver(msg, settings, recipients=["r@example.org"])
    finally:
        controller.stop()
    assert recorder.names == [ehlo_name or socket.getfqdn()]
