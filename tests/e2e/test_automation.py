"""Automations through the real paths: mail over SMTP, agent commands by mail, ratings.

Uses the desk of `tests.e2e.test_assignment` (a gateway on SMTP, four agents, teams), on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import select

from helpdesk.mailtokens import make_reply_address
from helpdesk.models import Agent, AuditEvent, Contact, Message, Ticket, TicketTag
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from tests.e2e.test_assignment import ANN, BOB, SUPPORT, Desk, desk_for, run_cli

__all__ = ["desk_for"]  # the fixture, shared


async def ticket(rt: Runtime, number: int = 1) -> tuple[Ticket, list[str], list[Message]]:
    async with rt.sessions() as session:
        t = (await session.execute(select(Ticket).where(Ticket.number == number))).unique()
        found = t.scalar_one()
        tags = sorted((await session.execute(select(TicketTag.tag).where(
            TicketTag.ticket_id == found.id))).scalars())
        messages = list((await session.execute(select(Message).where(
            Message.ticket_id == found.id).order_by(Message.id))).unique().scalars())
        return found, tags, messages


async def from_agent(rt: Runtime, send: Callable[..., Awaitable[None]], email: str,
                     body: str) -> None:
    async with rt.sessions() as session:
        agent = (await session.execute(select(Agent).where(Agent.email == email))).scalar_one()
    signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=agent.id)
    await send("Re: [TKT-000001] x", body=body, sender=email, to=signed)


async def test_a_new_urgent_ticket_is_raised_tagged_noted_and_given_to_the_team(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, cfg = await desk_for("""
[[automations]]
name = "urgent mail"
on = "ticket_created"
when = { subject = "/urgent|down/" }
actions = [ { set = { priority = "urgent" } }, { tag = "+hot" },
            { note = "Raised to urgent by its subject." }, { assign = "team:support" } ]
stop = true

[[automations]]
name = "never after stop"
on = "ticket_created"
actions = [ { tag = "+second" } ]
""")
    await send("Site is DOWN")
    found, tags, messages = await ticket(rt)
    assert (found.priority, tags, found.assignee.email if found.assignee else None) == (
        "urgent", ["hot"], ANN)
    assert [(m.kind, m.text) for m in messages][-1] == (
        "internal", "Raised to urgent by its subject.")
    async with rt.sessions() as session:
        actors = set((await session.execute(select(AuditEvent.actor).where(
            AuditEvent.action.in_(["ticket.priority", "ticket.tags"])))).scalars())
    assert actors == {"system:automation:urgent mail"}
    await send("A quiet question", sender="q@example.org")
    _, tags, _ = await ticket(rt, 2)
    assert tags == ["second"]
    listed = await run_cli(["--config", str(cfg), "rules", "list"])
    assert listed.output.splitlines()[0] == "automations:"
    assert "1. urgent mail" in listed.output and "on ticket_created: 4 action(s), stop" in \
        listed.output
    urgent = next(line for line in listed.output.splitlines() if "urgent mail" in line)
    assert "1 hit(s)" in urgent
    eml = cfg.parent / "down.eml"
    eml.write_bytes(b"From: x@example.org\r\nTo: support@support.example.com\r\n"
                    b"Subject: Site down\r\n\r\nHelp.\r\n")
    tested = await run_cli(["--config", str(cfg), "rules", "test", str(eml)])
    assert "urgent mail: MATCH (set, tag, note, assign; stop)" in tested.output
    assert "never after stop: MATCH (tag)" in tested.output


async def test_status_and_reply_triggers_with_their_conditions(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for("""
[[automations]]
name = "done"
on = "status_changed"
when = { from_status = "Open", to_status = "Resolved" }
actions = [ { tag = "+done -waiting" } ]

[[automations]]
name = "agent answered"
on = "agent_replied"
actions = [ { tag = "+answered" } ]

[[automations]]
name = "customer wrote while assigned to bob"
on = "requester_replied"
when = { assignee = "bob@support.example.com" }
actions = [ { note = "Bob, your customer wrote." } ]
""")
    await send("Printer")
    await from_agent(rt, send, BOB, "#assign me\nWe look into it.")
    _, tags, _ = await ticket(rt)
    assert tags == ["answered"]
    await send("Re: [TKT-000001] Printer", body="Any news?")
    _, _, messages = await ticket(rt)
    assert messages[-1].text == "Bob, your customer wrote."
    await from_agent(rt, send, BOB, "#status Resolved\n")
    _, tags, _ = await ticket(rt)
    assert tags == ["answered", "done"]


async def test_a_rule_chain_that_would_loop_stops_and_says_where(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for("""
[[automations]]
name = "A: high means normal"
on = "priority_changed"
when = { priority = "high" }
actions = [ { set = { priority = "normal" } } ]

[[automations]]
name = "B: normal means high"
on = "priority_changed"
when = { priority = "normal" }
actions = [ { set = { priority = "high" } } ]
""")
    await send("Printer")
    with structlog.testing.capture_logs() as logs:
        await from_agent(rt, send, BOB, "#priority high\n")
    found, _, _ = await ticket(rt)
    stopped = [e for e in logs if e["event"] == "automation.loop_stopped"]
    assert stopped and stopped[0]["automation"] == "A: high means normal"
    assert stopped[0]["chain"] == ["A: high means normal", "B: normal means high"]
    assert found.priority == "high"  # bob's high, A's normal, B's high: then it stops


async def test_a_low_rating_gets_a_note_and_a_tag(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for("""
[[automations]]
name = "unhappy"
on = "csat_rated"
when = { max_score = 2 }
actions = [ { tag = "+unhappy" }, { note = "Low rating: call the customer." } ]
""")
    await send("Printer")
    for score in (5, 1):
        async with rt.sessions() as session, session.begin():
            service = TicketService.for_runtime(session, rt)
            found = await service.get(1)
            alice = await session.get(Contact, found.requester_id)
            assert alice is not None
            await service.rate(found, alice, score, "")
        _, tags, _ = await ticket(rt)
        assert tags == ([] if score == 5 else ["unhappy"])


async def test_mail_actions_go_through_the_outbox_to_the_requester_or_the_staff(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    from helpdesk.models import OutboxRow

    rt, send, _ = await desk_for("""
[[automations]]
name = "waiting on the customer"
on = "status_changed"
when = { to_status = "Pending" }
actions = [ { mail = { to = "requester", template = "reminder" } } ]

[[automations]]
name = "tell the lead"
on = "priority_changed"
when = { priority = "urgent" }
actions = [ { mail = { to = "team_lead", template = "escalation" } },
            { mail = { to = "team:accounts", template = "escalation" } } ]
""")
    await send("Printer")
    await from_agent(rt, send, BOB, "#status Pending\n#priority urgent\nWhich model?")
    async with rt.sessions() as session:
        rows = (await session.execute(select(OutboxRow).where(
            OutboxRow.template.in_(["reminder", "escalation"])).order_by(OutboxRow.id)
        )).scalars().all()
    by = {(r.kind, r.template, tuple(r.recipients)): r for r in rows}
    reminder = by[("update", "reminder", ("alice@example.org",))]
    assert reminder.in_reply_to and reminder.references  # on the customer's thread
    # the lead of support (no assignee yet) and the accounts team: dan both times
    staff = [(r.kind, tuple(r.recipients)) for r in rows if r.template == "escalation"]
    assert staff == [("staff_notice", ("dan@support.example.com",))] * 2
    assert len(rows) == 3


async def test_a_portal_reply_fires_requester_replied(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    from helpdesk.links import Purpose
    from portal_lite.app import create_app
    from tests.integration.test_portal import GENEROUS, _client, _reply, _token

    rt, send, _ = await desk_for("""
[[automations]]
name = "web replies"
on = "requester_replied"
when = { channel = "email" }
actions = [ { tag = "+replied" }, { set = { priority = "high" } } ]
""")
    await send("Printer")
    found, tags, _ = await ticket(rt)
    assert tags == [] and found.priority == "normal"
    token = await _token(rt, Purpose.VIEW, found.id, found.requester_id)
    async with _client(create_app(rt, limits=GENEROUS)) as client:
        response = await _reply(client, token, "From the web.")
    assert response.status_code == 303
    found, tags, messages = await ticket(rt)
    assert (messages[-1].via, tags, found.priority) == ("web", ["replied"], "high")
