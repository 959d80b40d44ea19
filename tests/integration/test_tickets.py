"""The ticket service on SQLite and PostgreSQL: every change audited in the same transaction."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from helpdesk.audit import Actor
from helpdesk.config import StatusSettings
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.errors import UnknownValueError
from helpdesk.models import AuditEvent, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService

ALICE = Actor("contact", "alice@example.org")
BOB = Actor("agent", "bob@support.example.com")


async def _open(rt: Runtime, session, subject: str = "Printer on fire"):  # type: ignore[no-untyped-def]
    svc = TicketService(session, rt.settings, clock=rt.clock)
    requester = await get_or_create_contact(session, "Alice@Example.org", "Alice")
    ticket, message = await svc.open_ticket(requester=requester, subject=subject,
                                            text="It burns.", actor=ALICE)
    return svc, ticket, message


async def _audit(rt: Runtime, ticket_id: int) -> list[AuditEvent]:
    async with rt.sessions() as session:
        return list((await session.execute(
            select(AuditEvent).where(AuditEvent.ticket_id == ticket_id).order_by(AuditEvent.id)
        )).scalars())


async def test_open_ticket_numbers_from_one_with_defaults(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        svc, ticket, message = await _open(runtime, session)
        assert svc.reference(ticket) == "TKT-000001"
    assert (ticket.status, ticket.priority, ticket.category, ticket.channel) == (
        "Open", "normal", "general", "email")
    assert ticket.requester.email == "alice@example.org"
    assert ticket.organization is not None and ticket.organization.domain == "example.org"
    assert message.kind == "public" and message.text == "It burns."


async def test_every_change_writes_an_audit_event_with_before_and_after(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        svc, ticket, _ = await _open(runtime, session)
        agent = await add_agent(session, "bob@support.example.com", "Bob")
        await svc.set_status(ticket, "in progress", BOB)
        await svc.set_priority(ticket, "URGENT", BOB)
        await svc.set_category(ticket, "billing", BOB)
        await svc.set_channel(ticket, "phone", BOB)
        await svc.set_due(ticket, datetime(2026, 12, 1, 17, tzinfo=UTC), BOB)
        await svc.add_tags(ticket, ["VIP", "printer"], BOB)
        await svc.remove_tags(ticket, ["printer"], BOB)
        await svc.assign(ticket, agent, BOB)
        carol = await get_or_create_contact(session, "carol@example.org")
        await svc.add_watcher(ticket, carol, BOB)
        await svc.remove_watcher(ticket, carol, BOB)
        await svc.add_message(ticket, kind="internal", text="looks bad", actor=BOB,
                              author_agent=agent)
    events = await _audit(runtime, ticket.id)
    actions = [e.action for e in events]
    for action in ("ticket.created", "message.public", "ticket.status", "ticket.priority",
                   "ticket.category", "ticket.channel", "ticket.due_at", "ticket.tags",
                   "ticket.assignee", "ticket.watcher_added", "ticket.watcher_removed",
                   "message.internal"):
        assert action in actions, action
    status = next(e for e in events if e.action == "ticket.status")
    assert (status.before, status.after, status.actor) == (
        {"status": "Open"}, {"status": "In Progress"}, "agent:bob@support.example.com")
    assert status.created_at.tzinfo is not None


async def test_a_failed_transaction_leaves_neither_change_nor_audit(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        _, ticket, _ = await _open(runtime, session)
    with pytest.raises(RuntimeError):
        async with runtime.sessions() as session, session.begin():
            svc = TicketService(session, runtime.settings)
            t = await svc.get(ticket.number)
            await svc.set_priority(t, "high", BOB)
            raise RuntimeError("crash before commit")
    async with runtime.sessions() as session:
        t = (await session.execute(
            select(Ticket).where(Ticket.id == ticket.id))).unique().scalar_one()
        assert t.priority == "normal"
    assert "ticket.priority" not in [e.action for e in await _audit(runtime, ticket.id)]


@pytest.mark.parametrize(("method", "value", "kind"), [
    ("set_status", "Sleeping", "status"),
    ("set_priority", "whenever", "priority"),
    ("set_category", "gossip", "category"),
    ("set_channel", "pigeon", "channel"),
])
async def test_unknown_vocabulary_is_a_clear_domain_error(runtime: Runtime, method: str,
                                                          value: str, kind: str) -> None:
    async with runtime.sessions() as session, session.begin():
        svc, ticket, _ = await _open(runtime, session)
        with pytest.raises(UnknownValueError, match=f"unknown {kind} '{value}'"):
            await getattr(svc, method)(ticket, value, BOB)


async def test_requester_reply_reopens_pending_and_resolved(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        svc, ticket, _ = await _open(runtime, session)
        for status in ("Pending", "Resolved"):
            await svc.set_status(ticket, status, BOB)
            await svc.add_message(ticket, kind="public", text="still broken", actor=ALICE,
                                  author_contact=ticket.requester)
            assert ticket.status == "Open"
            assert ticket.resolved_at is None


async def test_first_public_agent_reply_is_the_first_response(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        svc, ticket, _ = await _open(runtime, session)
        agent = await add_agent(session, "bob@support.example.com")
        await svc.add_message(ticket, kind="internal", text="note", actor=BOB, author_agent=agent)
        assert ticket.first_response_at is None
        await svc.add_message(ticket, kind="public", text="on it", actor=BOB, author_agent=agent)
        assert ticket.first_response_at is not None


async def test_custom_status_keeps_the_meaning_of_its_class(runtime: Runtime) -> None:
    tickets = dataclasses.replace(runtime.settings.tickets, statuses=(
        *runtime.settings.tickets.statuses, StatusSettings("Waiting on Vendor", "paused")))
    settings = dataclasses.replace(runtime.settings, tickets=tickets)
    async with runtime.sessions() as session, session.begin():
        requester = await get_or_create_contact(session, "dave@example.net")
        svc = TicketService(session, settings)
        ticket, _ = await svc.open_ticket(requester=requester, subject="x", text="y", actor=ALICE)
        await svc.set_status(ticket, "waiting on vendor", BOB)
        assert svc.status_class(ticket.status) == "paused"
        await svc.add_message(ticket, kind="public", text="any news?", actor=ALICE,
                              author_contact=requester)
        assert ticket.status == "Open"


async def test_contacts_are_matched_case_insensitively_and_freemail_has_no_org(
        runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        a = await get_or_create_contact(session, "Eve@Gmail.com", "Eve",
                                        freemail=runtime.settings.tickets.freemail_domains)
        b = await get_or_create_contact(session, "eve@gmail.COM")
        assert a.id == b.id and a.name == "Eve" and a.organization_id is None


async def test_clock_is_injected_not_read(runtime: Runtime) -> None:
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with runtime.sessions() as session, session.begin():
        svc = TicketService(session, runtime.settings, clock=lambda: fixed)
        requester = await get_or_create_contact(session, "z@example.org")
        ticket, message = await svc.open_ticket(requester=requester, subject="s", text="t",
                                                actor=ALICE)
    assert ticket.created_at == fixed and message.created_at == fixed
    assert fixed - timedelta(seconds=1) < ticket.sla_next_at <= fixed  # type: ignore[operator]


async def test_a_contact_without_a_name_gets_the_first_one_seen_and_keeps_it(
        runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        first = await get_or_create_contact(session, "quiet@example.org")
        named = await get_or_create_contact(session, "Quiet@example.org", "Quinn Quiet")
        again = await get_or_create_contact(session, "quiet@example.org", "Someone Else")
    assert first.id == named.id == again.id
    assert (named.name, again.name) == ("Quinn Quiet", "Quinn Quiet")


async def test_the_search_index_follows_every_write_and_stays_whole(runtime: Runtime) -> None:
    """New tickets and messages are indexed by the service (no insert triggers on SQLite);
    renames, merges, deletions and purges keep the index in step with its tables."""
    from sqlalchemy import text

    from helpdesk.search import search

    async with runtime.sessions() as session, session.begin():
        svc, first, _ = await _open(runtime, session, "Printer on fire")
        _, second, _ = await _open(runtime, session, "Scanner jammed")
        _, third, _ = await _open(runtime, session, "Toner smudges")
        await svc.add_message(first, kind="public", text="The flames are blue", actor=BOB)
        await svc.add_message(first, kind="internal", text="check the fuser", actor=BOB)
        await svc.set_subject(second, "Scanner jammed with staples", BOB)
    async with runtime.sessions() as session:
        found = await search(session, runtime.settings, "blue flames")
        assert [h.ticket_id for h in found] == [first.id]
        assert [h.ticket_id for h in await search(session, runtime.settings, "staples")] == [
            second.id]
        assert [h.ticket_id for h in await search(session, runtime.settings, "fuser")] == [
            first.id]
    async with runtime.sessions() as session, session.begin():
        svc = TicketService(session, runtime.settings, clock=runtime.clock)
        source, target = await svc.get(third.number), await svc.get(first.number)
        await svc.merge(source, target, BOB)
        doomed = await svc.get(second.number)
        await svc.delete(doomed, BOB)
        await svc.purge(doomed, BOB)
    async with runtime.sessions() as session:
        assert await search(session, runtime.settings, "staples") == []
        assert [h.ticket_id for h in await search(session, runtime.settings, "toner")] != []
        if runtime.engine.dialect.name == "sqlite":
            for table in ("message_search", "ticket_search"):  # raises when out of step
                await session.execute(text(
                    f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"))


async def test_a_batch_indexes_at_its_end_and_a_rename_in_it_stays_whole(
        runtime: Runtime) -> None:
    """As the gateway's group commit runs: rows buffered, a rename in the same batch."""
    from sqlalchemy import text

    from helpdesk.search import search
    from helpdesk.tx import open_buffer, write_buffer

    async with runtime.sessions() as session, session.begin():
        open_buffer(session)
        svc, ticket, _ = await _open(runtime, session, "Modem blinks")
        assert [h.ticket_id for h in await search(session, runtime.settings, "modem")] == [
            ticket.id]  # search writes the batch's pending rows first
        _, other, _ = await _open(runtime, session, "Router hums")
        await svc.set_subject(other, "Router whistles", BOB)
        await session.flush()  # the rename's UPDATE (and its trigger) before the batch's end
        await write_buffer(session)
    async with runtime.sessions() as session:
        assert [h.ticket_id for h in await search(session, runtime.settings, "whistles")] == [
            other.id]
        assert await search(session, runtime.settings, "hums") == []
        if runtime.engine.dialect.name == "sqlite":
            for table in ("message_search", "ticket_search"):
                await session.execute(text(
                    f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"))
