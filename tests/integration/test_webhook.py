"""Automation webhooks: written to the outbox with the change, POSTed by the worker to a
real local HTTP server, signed, and retried after a 5xx."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk import outbox_ops
from helpdesk.audit import Actor
from helpdesk.config import Automation, AutomationAction
from helpdesk.directory import get_or_create_contact
from helpdesk.models import OutboxRow
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from responders.actors import deliver_row
from responders.broker import WorkerOptions
from responders.compose import Composer
from tests.conftest import make_settings
from tests.fixtures.smtp_sink import SmtpSink
from tests.integration.test_responders import worker

FAST = WorkerOptions(lease=timedelta(seconds=10), poll_interval=0.05,
                     retry_base=timedelta(milliseconds=1))
WORKER = WorkerOptions(lease=timedelta(seconds=10), poll_interval=0.05,
                       retry_base=timedelta(seconds=0.2), threads=2, max_in_flight=8)
SECRET = "s3cret-key"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]], list[int]]]:
    """A local HTTP server (in a thread) that records each POST and answers with the next
    status from its list, then 200."""
    seen: list[tuple[dict[str, str], bytes]] = []
    answers = [500, 200]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((dict(self.headers.items()), body))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen, answers
    server.shutdown()
    server.server_close()


async def test_a_webhook_is_signed_posted_and_retried_after_a_500(
        tmp_path: Path, db_url: str, broker_url: str, smtp_sink: SmtpSink,
        receiver: Any) -> None:
    url, seen, _ = receiver
    settings = dataclasses.replace(make_settings(
        tmp_path, db_url, broker={"url": broker_url},
        outbound={"host": "127.0.0.1", "port": smtp_sink.port}), automations=(Automation(
            "tell the CRM", on="ticket_created",
            actions=(AutomationAction(webhook={"url": url, "secret": SECRET}),)),))
    rt = await Runtime.open(settings)
    try:
        async with rt.sessions() as session, session.begin():
            alice = await get_or_create_contact(session, "alice@example.org", "Alice")
            await TicketService.for_runtime(session, rt).open_ticket(
                requester=alice, subject="Printer on fire", text="It burns.",
                actor=Actor("contact", alice.email))
        async with worker(rt, WORKER):  # the real relay and Dramatiq workers
            for _ in range(200):
                async with rt.sessions() as session:
                    row = (await session.execute(select(OutboxRow).where(
                        OutboxRow.kind == "webhook"))).scalar_one()
                if row.status in ("sent", "failed"):
                    break
                await asyncio.sleep(0.05)
    finally:
        await rt.close()
    assert (row.status, row.attempts) == ("sent", 2)  # a 500, then a 200
    assert SECRET not in json.dumps(row.context), "the secret stays out of the database"
    assert len(seen) == 2
    (headers, body), (again, body2) = seen
    assert body == body2 and headers["X-Helpdesk-Delivery"] == again["X-Helpdesk-Delivery"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Helpdesk-Signature"] == expected
    payload = json.loads(body)
    assert payload["event"] == "ticket_created" and payload["automation"] == "tell the CRM"
    assert payload["ticket"]["reference"] == "TKT-000001"
    assert payload["ticket"]["subject"] == "Printer on fire"


async def test_a_4xx_answer_fails_the_row_for_good(tmp_path: Path, db_url: str,
                                                   receiver: Any) -> None:
    url, _, answers = receiver
    answers[:] = [404]
    settings = dataclasses.replace(make_settings(tmp_path, db_url), automations=(Automation(
        "gone", on="ticket_created", actions=(AutomationAction(webhook={"url": url}),)),))
    rt = await Runtime.open(settings)
    try:
        async with rt.sessions() as session, session.begin():
            alice = await get_or_create_contact(session, "alice@example.org", "Alice")
            await TicketService.for_runtime(session, rt).open_ticket(
                requester=alice, subject="x", text="y", actor=Actor("contact", alice.email))
            row_id = (await session.execute(select(OutboxRow.id).where(
                OutboxRow.kind == "webhook"))).scalar_one()
        async with rt.sessions() as session, session.begin():  # the relay's claim
            assert row_id in await outbox_ops.claim_due(session, now=rt.clock(),
                                                        lease=FAST.lease)
        composer = Composer.from_settings(rt.settings, rt.clock)
        assert await deliver_row(rt, row_id, FAST, composer) == "failed"
        async with rt.sessions() as session:
            row = await session.get(OutboxRow, row_id)
            assert row is not None and (row.status, row.last_error) == ("failed", "HTTP 404")
    finally:
        await rt.close()
