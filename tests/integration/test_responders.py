"""The worker role against a real SMTP sink: what is sent, threading, retries, failures, restarts.

Each test runs on SQLite and PostgreSQL (``db_url``) and with the in-memory and the Redis
broker (``broker_url``). The worker runs in this test's event loop (``responders.service.run``
with short leases and backoff); its Dramatiq threads call back into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpdesk import outbox
from helpdesk.audit import Actor
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.models import Agent, Message, OutboxRow, Ticket
from helpdesk.notify import Notifier, acknowledge
from helpdesk.runtime import Runtime
from helpdesk.tickets import NewAttachment, TicketService
from responders.broker import WorkerOptions
from responders.service import run
from tests.conftest import make_settings

if TYPE_CHECKING:
    from tests.fixtures.smtp_sink import ReceivedMessage, SmtpSink

pytest_plugins = ["tests.fixtures.smtp_sink"]

ALICE = "alice@example.org"
CAROL = "carol@example.org"
BOB = "bob@support.example.com"
ADMIN = "admin@support.example.com"
FAST = WorkerOptions(lease=timedelta(seconds=10), poll_interval=0.05,
                     retry_base=timedelta(seconds=0.2), threads=4, max_in_flight=32)


@pytest.fixture
async def rt(tmp_path: Path, db_url: str, broker_url: str,
             smtp_sink: SmtpSink) -> AsyncIterator[Runtime]:
    settings = make_settings(
        tmp_path, db_url, broker={"url": broker_url},
        outbound={"host": "127.0.0.1", "port": smtp_sink.port, "max_attempts": 3},
        instance={"admin_email": ADMIN},
        portal={"secret_key": ["test-secret"], "base_url": "http://portal.test"})
    runtime = await Runtime.open(settings)
    try:
        yield runtime
    finally:
        await runtime.close()


@contextlib.asynccontextmanager
async def worker(rt: Runtime, options: WorkerOptions = FAST) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(rt, stop, options))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def wait_for(sink: SmtpSink, predicate: Callable[[ReceivedMessage], bool],
                   count: int = 1, timeout: float = 15) -> list[ReceivedMessage]:
    return await asyncio.to_thread(sink.wait_for, predicate, timeout, count)


def to(address: str) -> Callable[[ReceivedMessage], bool]:
    return lambda m: address in m.rcpt_tos


def text_of(m: ReceivedMessage) -> str:
    part = m.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def service(rt: Runtime, session: Any) -> TicketService:
    return TicketService(session, rt.settings, clock=rt.clock, listeners=[Notifier(rt)])


async def open_ticket(rt: Runtime, subject: str = "Printer on fire") -> int:
    """Alice's new ticket as the gateway makes it: the ticket, its notices and the ack."""
    async with rt.sessions() as session, session.begin():
        await add_agent(session, BOB, "Bob")
        alice = await get_or_create_contact(session, ALICE, "Alice")
        ticket, message = await service(rt, session).open_ticket(
            requester=alice, subject=subject, text="It burns.", actor=Actor("contact", ALICE),
            message_id="<alice-1@example.org>")
        assert await acknowledge(rt, session, ticket, message)
        return ticket.number


async def rows(rt: Runtime) -> list[OutboxRow]:
    async with rt.sessions() as session:
        return list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())


async def test_acknowledgement_arrives_with_the_token_and_auto_submitted(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    await open_ticket(rt)
    async with worker(rt):
        [ack] = await wait_for(smtp_sink, to(ALICE))
        [notice] = await wait_for(smtp_sink, to(BOB))
    assert ack.subject == "[TKT-000001] Printer on fire"
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["In-Reply-To"] == "<alice-1@example.org>"
    assert ack.message["X-Helpdesk-Ticket"] == "TKT-000001"
    assert ack.message["X-Helpdesk-Loop"] == rt.settings.instance.id
    assert "http://portal.test/t/" in text_of(ack)
    assert notice.message["Auto-Submitted"] == "auto-generated"
    assert "+t1a" in str(notice.message["Reply-To"])
    by_id = {r.message_id: r for r in await rows(rt)}
    assert {m.message_id for m in smtp_sink.messages} == set(by_id)
    assert all(r.status == "sent" and r.sent_at is not None for r in by_id.values())


async def test_agent_reply_reaches_requester_and_watcher_threaded_to_the_last_message(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    number = await open_ticket(rt)
    sha = rt.store.put(b"%PDF-1.4 manual")
    async with rt.sessions() as session, session.begin():
        svc = service(rt, session)
        ticket = await svc.get(number)
        alice = await get_or_create_contact(session, ALICE)
        carol = await get_or_create_contact(session, CAROL, "Carol")
        bob = (await session.execute(select(Agent).where(Agent.email == BOB))).scalar_one()
        await svc.add_watcher(ticket, carol, Actor("agent", BOB, bob.id))
        await svc.add_message(ticket, kind="public", text="Also smoke.", actor=Actor(
            "contact", ALICE), author_contact=alice, message_id="<alice-2@example.org>")
        await svc.add_message(
            ticket, kind="public", text="Unplug it, please.", actor=Actor("agent", BOB, bob.id),
            author_agent=bob, attachments=[NewAttachment("manual.pdf", "application/pdf", 15,
                                                         sha)])
        await svc.add_message(ticket, kind="internal", text="INTERNAL: customer is VIP",
                              actor=Actor("agent", BOB, bob.id), author_agent=bob)
    async with worker(rt):
        replies = await wait_for(smtp_sink, lambda m: "Unplug it" in text_of(m), count=2)
        await wait_for(smtp_sink, lambda m: True, count=len(await rows(rt)))
    assert sorted(r for m in replies for r in m.rcpt_tos) == [ALICE, CAROL]
    for m in replies:
        assert m.message["In-Reply-To"] == "<alice-2@example.org>"
        assert "<alice-1@example.org>" in str(m.message["References"])
        assert m.message["Auto-Submitted"] is None
        assert [(a.get_filename(), a.get_content()) for a in m.message.iter_attachments()] == [
            ("manual.pdf", b"%PDF-1.4 manual")]
    assert len({m.message_id for m in replies}) == 2
    assert not [m for m in smtp_sink.messages if b"INTERNAL" in m.raw]


async def test_a_row_about_an_internal_note_is_refused_and_reported(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    number = await open_ticket(rt)
    async with rt.sessions() as session, session.begin():
        svc = service(rt, session)
        ticket = await svc.get(number)
        bob = (await session.execute(select(Agent).where(Agent.email == BOB))).scalar_one()
        note = await svc.add_message(ticket, kind="internal", text="INTERNAL secret",
                                     actor=Actor("agent", BOB, bob.id), author_agent=bob)
        bad = await outbox.enqueue(
            session, kind="reply", template="agent_reply", to=[ALICE],
            instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
            at=rt.clock(), ticket=ticket, about_message_id=note.id)
        bad_id = bad.id
    async with worker(rt):
        [admin] = await wait_for(smtp_sink, to(ADMIN))
        await wait_for(smtp_sink, lambda m: True, count=3)  # ack, agent notice, admin
    assert not [m for m in smtp_sink.messages if b"INTERNAL" in m.raw]
    failed = {r.id: r for r in await rows(rt)}[bad_id]
    assert failed.status == "failed" and "internal note" in failed.last_error
    assert admin.message["Auto-Submitted"] == "auto-generated"


async def test_a_451_is_retried_with_the_same_message_id(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(2, "451 4.3.0 Greylisted, try later")
    await open_ticket(rt)
    async with worker(rt):
        await wait_for(smtp_sink, lambda m: True, count=2)
    rejected = [r.raw for r in smtp_sink.rejections]
    assert len(rejected) == 2
    sent_ids = {m.message_id for m in smtp_sink.messages}
    for raw in rejected:
        header = next(line for line in raw.split(b"\r\n") if line.lower().startswith(b"message-id"))
        assert header.split(b":", 1)[1].strip().decode() in sent_ids
    assert len(smtp_sink.messages) == 2
    all_rows = await rows(rt)
    assert {r.status for r in all_rows} == {"sent"}
    assert sum(r.attempts for r in all_rows) == 4


async def test_a_550_marks_the_row_failed_and_tells_the_admin_once(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    # The first mail and the admin notice about it are both refused: no notice about a notice.
    smtp_sink.fail_next(1, "550 5.1.1 <alice@example.org>: no such user")
    await open_ticket(rt)
    async with worker(rt, FAST):
        [admin] = await wait_for(smtp_sink, to(ADMIN))
        await wait_for(smtp_sink, lambda m: True, count=2)
    failed = [r for r in await rows(rt) if r.status == "failed"]
    assert len(failed) == 1
    assert failed[0].last_error.startswith("550 5.1.1") and failed[0].attempts == 1
    assert str(failed[0].id) in text_of(admin) and "550 5.1.1" in text_of(admin)
    assert admin.subject.startswith("Undeliverable: [TKT-000001]")


async def test_a_failed_admin_notice_does_not_notify_again(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(3, "550 5.7.1 Refused")
    await open_ticket(rt)
    async with worker(rt):
        for _ in range(100):
            states = [r.status for r in await rows(rt)]
            if len(states) == 4 and "pending" not in states and "queued" not in states \
                    and "sending" not in states:
                break
            await asyncio.sleep(0.1)
    all_rows = await rows(rt)
    kinds = sorted(r.kind for r in all_rows)
    assert kinds == ["ack", "admin_notice", "admin_notice", "agent_notice"]
    assert sorted(r.status for r in all_rows) == ["failed", "failed", "failed", "sent"]


async def test_connection_failures_are_retried_until_max_attempts_then_failed(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = dataclasses.replace(rt.settings, outbound=dataclasses.replace(
        rt.settings.outbound, port=closed_port))
    unreachable = Runtime(settings, rt.engine, rt.sessions, rt.store, rt.clock)
    await open_ticket(rt)
    async with worker(unreachable):
        for _ in range(100):
            if {r.status for r in await rows(rt) if r.kind != "admin_notice"} == {"failed"}:
                break
            await asyncio.sleep(0.1)
    first = [r for r in await rows(rt) if r.kind != "admin_notice"]
    assert {r.status for r in first} == {"failed"}
    assert {r.attempts for r in first} == {rt.settings.outbound.max_attempts}
    assert all("connection" in r.last_error for r in first)
    assert not smtp_sink.messages


async def test_rows_claimed_by_a_crashed_worker_are_sent_after_the_lease(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    await open_ticket(rt)
    async with rt.sessions() as session, session.begin():
        for row, state in zip((await session.execute(select(OutboxRow))).scalars(),
                              ("queued", "sending"), strict=True):
            row.status, row.next_attempt_at = state, rt.clock() + timedelta(seconds=1)
    async with worker(rt):
        await wait_for(smtp_sink, lambda m: True, count=2)
    assert {r.status for r in await rows(rt)} == {"sent"}
    assert len(smtp_sink.by_message_id()) == 2


async def test_outbox_retry_command_requeues_a_failed_row(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    from helpdesk.cli_outbox import outbox_retry

    smtp_sink.fail_next(1, "550 5.1.1 no such user")
    await open_ticket(rt)
    async with worker(rt):
        await wait_for(smtp_sink, to(ADMIN))
        [failed] = [r for r in await rows(rt) if r.status == "failed"]
        result = await asyncio.to_thread(
            CliRunner().invoke, outbox_retry, ["--config", rt.settings.source, str(failed.id)],
            catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"{failed.id}" in result.output
        [again] = await wait_for(smtp_sink, lambda m: m.message_id == failed.message_id)
    assert {r.id: r.status for r in await rows(rt)}[failed.id] == "sent"
    assert again.rcpt_tos == tuple(failed.recipients)


async def test_unknown_row_ids_make_outbox_retry_fail(rt: Runtime) -> None:
    from helpdesk.cli_outbox import outbox_retry

    result = await asyncio.to_thread(
        CliRunner().invoke, outbox_retry, ["--config", rt.settings.source, "999"])
    assert result.exit_code == 1
    assert "999" in result.output


async def test_resolved_notice_carries_rating_links(rt: Runtime, smtp_sink: SmtpSink) -> None:
    number = await open_ticket(rt)
    async with rt.sessions() as session, session.begin():
        svc = service(rt, session)
        await svc.set_status(await svc.get(number), "Resolved", Actor("agent", BOB))
    async with worker(rt):
        [resolved] = await wait_for(smtp_sink, lambda m: "resolved" in text_of(m))
    text = text_of(resolved)
    assert [f"?score={n}" in text for n in range(1, 6)] == [True] * 5
    assert resolved.message["Auto-Submitted"] == "auto-generated"
    # the requester's mail never shows internal data
    async with rt.sessions() as session:
        assert (await session.execute(select(Ticket))).scalars().one().status == "Resolved"
        assert not (await session.execute(
            select(Message).where(Message.kind == "internal"))).scalars().all()


async def test_relay_claims_no_more_than_max_in_flight_and_reclaims_expired_leases(
        rt: Runtime) -> None:
    from helpdesk import outbox_ops

    await open_ticket(rt)
    async with rt.sessions() as session, session.begin():
        ticket = (await session.execute(select(Ticket))).scalars().one()
        for _ in range(8):
            await outbox.enqueue(session, kind="ack", template="acknowledgement", to=[ALICE],
                                 instance_id="x", secret="s", domain="d", at=rt.clock(),
                                 ticket=ticket)
    now, lease = rt.clock(), timedelta(seconds=60)
    async with rt.sessions() as session, session.begin():
        first = await outbox_ops.claim_due(session, now=now, lease=lease, max_in_flight=4)
    async with rt.sessions() as session, session.begin():
        blocked = await outbox_ops.claim_due(session, now=now, lease=lease, max_in_flight=4)
    async with rt.sessions() as session, session.begin():
        later = await outbox_ops.claim_due(session, now=now + lease, lease=lease, limit=3)
    assert len(first) == 4 and blocked == []
    assert later == sorted(first)[:3]  # leases ran out: the oldest rows come back first


def test_backoff_doubles_from_the_base_and_stops_at_an_hour() -> None:
    from helpdesk.outbox_ops import backoff

    base = timedelta(seconds=30)
    assert [backoff(n, base).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(20, base) == timedelta(hours=1)


async def test_a_clean_stop_leaves_nothing_claimed_and_a_restart_sends_the_rest_at_once(
        rt: Runtime, smtp_sink: SmtpSink) -> None:
    number = await open_ticket(rt)
    async with rt.sessions() as session, session.begin():
        ticket = await service(rt, session).get(number)
        for _ in range(150):
            await outbox.enqueue(session, kind="ack", template="acknowledgement", to=[ALICE],
                                 instance_id=rt.settings.instance.id, secret=rt.secrets[-1],
                                 domain=rt.mail_domain, at=rt.clock(), ticket=ticket)
    memory = rt.settings.broker.url.startswith("memory://")
    # Memory: a 10-minute lease would hide anything lost, so the restart must not need it.
    # Redis: messages a stopping worker had prefetched stay in Redis's in-flight set until
    # dramatiq's dead-worker requeue or the row lease; the short lease bounds that here.
    options = dataclasses.replace(FAST, lease=timedelta(minutes=10) if memory else FAST.lease,
                                  max_in_flight=100)
    async with worker(rt, options):
        await wait_for(smtp_sink, lambda m: True, count=10)
    after_stop = {r.status for r in await rows(rt)}
    assert "pending" in after_stop or "queued" in after_stop
    if memory:
        assert after_stop <= {"sent", "pending"}
    async with worker(rt, options):
        await wait_for(smtp_sink, lambda m: True, count=152, timeout=60)
    assert {r.status for r in await rows(rt)} == {"sent"}
    assert len(smtp_sink.by_message_id()) == 152
    assert len(smtp_sink.messages) == 152


@pytest.mark.parametrize(("reply", "status"), [("450 4.2.0 Mailbox busy", "sent"),
                                               ("550 5.1.1 No such user", "failed")])
async def test_a_refusal_at_rcpt_is_temporary_or_permanent_by_its_code(
        rt: Runtime, smtp_sink: SmtpSink, reply: str, status: str) -> None:
    async with rt.sessions() as session, session.begin():
        alice = await get_or_create_contact(session, ALICE, "Alice")
        ticket, message = await TicketService(session, rt.settings, clock=rt.clock).open_ticket(
            requester=alice, subject="Only the ack", text="x", actor=Actor("contact", ALICE))
        assert await acknowledge(rt, session, ticket, message)
    smtp_sink.fail_next(1, reply, stage="RCPT")
    async with worker(rt):
        for _ in range(100):
            ack = next(r for r in await rows(rt) if r.kind == "ack")
            if ack.status in ("sent", "failed"):
                break
            await asyncio.sleep(0.1)
    assert ack.status == status
    assert [r.stage for r in smtp_sink.rejections] == ["RCPT"]
    if status == "failed":
        assert ack.last_error.startswith("550") and "alice@example.org" in ack.last_error
    else:
        assert ack.attempts == 2 and [m.rcpt_tos for m in smtp_sink.messages
                                      if m.message_id == ack.message_id] == [(ALICE,)]


async def test_two_messages_for_one_row_send_it_once(rt: Runtime, smtp_sink: SmtpSink) -> None:
    from helpdesk import outbox_ops
    from responders.actors import deliver_row
    from responders.compose import Composer

    await open_ticket(rt)
    async with rt.sessions() as session, session.begin():
        ids = await outbox_ops.claim_due(session, now=rt.clock(), lease=FAST.lease)
    composer = Composer.from_settings(rt.settings, rt.clock)
    outcomes = await asyncio.gather(*(deliver_row(rt, row_id, FAST, composer)
                                      for row_id in ids + ids))
    assert sorted(outcomes) == ["sent", "sent", "skipped", "skipped"]
    assert await deliver_row(rt, ids[0], FAST, composer) == "skipped"  # sent rows stay sent
    assert len(smtp_sink.messages) == 2
