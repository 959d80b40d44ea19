"""The SLA daemon on SQLite and PostgreSQL: clocks from history, alerts once, shared ticks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from helpdesk.audit import Actor
from helpdesk.cli_sla import sla, sla_state, sla_summary
from helpdesk.config import Settings, SlaPolicySettings, SlaSettings
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.models import AuditEvent, OutboxRow, SlaClock, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from responders.broker import WorkerOptions
from responders.service import run as run_worker
from sla_daemon.engine import tick
from sla_daemon.service import serve
from tests.conftest import make_settings, sqlite_url
from tests.fixtures.smtp_sink import SmtpSink

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
ALICE = Actor("contact", "alice@example.org")
BOB = Actor("agent", "bob@support.example.com")
ADMIN = "admin@support.example.com"
ROUND_THE_CLOCK = SlaPolicySettings(
    name="round-the-clock", default=True, always=True,
    first_response_minutes={"normal": 60, "urgent": 15},
    resolution_minutes={"normal": 240, "urgent": 60})
TWO_MINUTES = SlaPolicySettings(
    name="two-minutes", always=True, categories=("billing",),
    first_response_minutes={"normal": 120}, resolution_minutes={"normal": 2})


def with_policies(base: Settings, batch_size: int = 500) -> Settings:
    return dataclasses.replace(base, sla=SlaSettings(
        tick_seconds=0.05, batch_size=batch_size, policies=(TWO_MINUTES, ROUND_THE_CLOCK)))


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return with_policies(make_settings(tmp_path, db_url))


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


class Clock:
    """A hand-set clock for the ticket service: changes happen at chosen instants."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def open_ticket(rt: Runtime, clock: Clock, **fields: str) -> int:
    async with rt.sessions() as session, session.begin():
        svc = TicketService(session, rt.settings, clock=clock)
        requester = await get_or_create_contact(session, "alice@example.org", "Alice")
        ticket, _ = await svc.open_ticket(requester=requester, subject="Printer on fire",
                                          text="It burns.", actor=ALICE, **fields)
        return ticket.number


async def change(rt: Runtime, clock: Clock, number: int, at: datetime, *,
                 status: str | None = None, priority: str | None = None,
                 reply: bool = False, assign: bool = False) -> None:
    clock.at = at
    async with rt.sessions() as session, session.begin():
        svc = TicketService(session, rt.settings, clock=clock)
        ticket = await svc.get(number)
        if status:
            await svc.set_status(ticket, status, BOB)
        if priority:
            await svc.set_priority(ticket, priority, BOB)
        if reply or assign:
            agent = await add_agent(session, "bob@support.example.com", "Bob")
            if assign:
                await svc.assign(ticket, agent, BOB)
            if reply:
                await svc.add_message(ticket, kind="public", text="On it.", actor=BOB,
                                      author_agent=agent)


async def summary(rt: Runtime, number: int, at: datetime) -> dict:  # type: ignore[type-arg]
    async with rt.sessions() as session:
        ticket = (await session.execute(
            select(Ticket).where(Ticket.number == number))).unique().scalar_one()
        return await sla_summary(session, rt.settings, ticket, at)


async def alerts(rt: Runtime) -> list[tuple[str, list[str], str]]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(OutboxRow).where(
            OutboxRow.kind.like("sla_%")).order_by(OutboxRow.id))).scalars()
        return [(r.kind, r.recipients, r.context["clock"]) for r in rows]


async def next_at(rt: Runtime, number: int) -> datetime | None:
    async with rt.sessions() as session:
        return (await session.execute(
            select(Ticket.sla_next_at).where(Ticket.number == number))).scalar_one()


async def test_clock_pauses_while_pending_and_is_met_by_first_agent_reply(
        runtime: Runtime) -> None:
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    await change(runtime, clock, number, minutes(10), status="Pending")
    paused = await summary(runtime, number, minutes(30))
    assert paused["policy"] == "round-the-clock"
    assert paused["first_response"] == {
        "target_minutes": 60.0, "elapsed_minutes": 10.0, "warn_at": None, "due_at": None,
        "state": "paused"}
    await change(runtime, clock, number, minutes(40), status="Open")
    running = await summary(runtime, number, minutes(50))
    assert running["first_response"]["elapsed_minutes"] == 20.0
    assert running["first_response"]["due_at"] == minutes(90).isoformat()
    assert running["first_response"]["warn_at"] == minutes(78).isoformat()
    assert running["first_response"]["state"] == "on_track"
    await change(runtime, clock, number, minutes(55), reply=True)
    await change(runtime, clock, number, minutes(70), status="Resolved")
    done = await summary(runtime, number, minutes(500))
    assert done["first_response"]["state"] == "met"
    assert done["first_response"]["elapsed_minutes"] == 25.0
    assert done["resolution"] == {
        "target_minutes": 240.0, "elapsed_minutes": 40.0, "warn_at": None, "due_at": None,
        "state": "met"}
    assert sla_state(done) == "met"


async def test_reopen_resumes_resolution_time(runtime: Runtime) -> None:
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    await change(runtime, clock, number, minutes(30), status="Resolved")
    await change(runtime, clock, number, minutes(35), status="Closed")
    await change(runtime, clock, number, minutes(100), status="Open")
    s = await summary(runtime, number, minutes(110))
    assert s["resolution"]["elapsed_minutes"] == 40.0
    assert s["resolution"]["state"] == "on_track"
    assert s["resolution"]["due_at"] == minutes(100 + 210).isoformat()


async def test_warning_fires_once_at_80_percent_to_the_admin_when_unassigned(
        runtime: Runtime) -> None:
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    assert (await tick(runtime, minutes(1))).tickets == 1
    assert await next_at(runtime, number) == minutes(48)  # 80% of 60
    assert (await tick(runtime, minutes(47.9))).tickets == 0
    first = await tick(runtime, minutes(48))
    again = await tick(runtime, minutes(49))
    assert (first.warnings, first.breaches, again.warnings, again.tickets) == (1, 0, 0, 0)
    assert await alerts(runtime) == [("sla_warning", [ADMIN], "first_response")]
    assert await next_at(runtime, number) == minutes(60)
    assert (await summary(runtime, number, minutes(49)))["first_response"]["state"] == "warning"
    async with runtime.sessions() as session:
        actions = list((await session.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("sla.%")))).scalars())
    assert actions == ["sla.warning"]


async def test_breach_fires_once_to_assignee_and_admin_and_supersedes_the_warning(
        runtime: Runtime) -> None:
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    await change(runtime, clock, number, minutes(5), assign=True)
    result = await tick(runtime, minutes(61))  # daemon was away: past warning and target
    assert (result.warnings, result.breaches) == (0, 1)
    assert (await tick(runtime, minutes(62))).tickets == 0
    assert await alerts(runtime) == [
        ("sla_breach", ["bob@support.example.com", ADMIN], "first_response")]
    async with runtime.sessions() as session:
        row = await session.get(SlaClock, (1, "first_response"))
        assert row is not None and (row.warned, row.breached) == (True, True)
    # the resolution clock still runs: warned at 192, breached at 240, each once
    later = [await tick(runtime, minutes(m)) for m in (192, 200, 240, 300)]
    assert [(r.warnings, r.breaches) for r in later] == [(1, 0), (0, 0), (0, 1), (0, 0)]
    assert [a[0] for a in await alerts(runtime)] == ["sla_breach", "sla_warning", "sla_breach"]
    assert await next_at(runtime, number) is None
    # a late reply meets the clock; the breach stays on record and is not sent again
    await change(runtime, clock, number, minutes(310), reply=True)
    assert (await tick(runtime, minutes(311))).breaches == 0
    assert (await summary(runtime, number, minutes(311)))["first_response"]["state"] == "met"
    async with runtime.sessions() as session:
        row = await session.get(SlaClock, (1, "first_response"))
        assert row is not None and row.breached and row.met_at == minutes(310)


async def test_priority_change_recomputes_due_times(runtime: Runtime) -> None:
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    await tick(runtime, minutes(1))
    assert await next_at(runtime, number) == minutes(48)
    await change(runtime, clock, number, minutes(10), priority="urgent")
    assert await next_at(runtime, number) == minutes(10)  # handed to the next tick
    await tick(runtime, minutes(10))
    assert await next_at(runtime, number) == minutes(12)  # 80% of 15
    s = await summary(runtime, number, minutes(10))
    assert s["first_response"]["target_minutes"] == 15.0
    assert s["first_response"]["due_at"] == minutes(15).isoformat()
    assert (await tick(runtime, minutes(15))).breaches == 1


async def test_paused_ticket_is_not_due_until_it_resumes(runtime: Runtime) -> None:
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    await change(runtime, clock, number, minutes(10), status="On Hold")
    await tick(runtime, minutes(11))
    assert await next_at(runtime, number) is None
    assert (await tick(runtime, minutes(1000))).tickets == 0
    await change(runtime, clock, number, minutes(1000), status="In Progress")
    await tick(runtime, minutes(1000))
    assert await next_at(runtime, number) == minutes(1000 + 38)  # 48 - 10 already elapsed


async def test_two_minute_target_paused_resumed_and_breached_end_to_end(
        runtime: Runtime) -> None:
    """24x7, 2-minute resolution target: pause, resume, warn, breach; the outbox row.

    The delivery of that row through the responders to an SMTP server is the next test.
    """
    clock = Clock(T0)
    number = await open_ticket(runtime, clock, category="billing")
    await change(runtime, clock, number, minutes(0.5), status="Pending")
    assert (await tick(runtime, minutes(0.6))).tickets == 1
    assert await next_at(runtime, number) is None
    assert (await summary(runtime, number, minutes(3)))["resolution"]["state"] == "paused"
    await change(runtime, clock, number, minutes(5), status="Open")
    result = await tick(runtime, minutes(6.1))  # 0.5 + 1.1 = 1.6 minutes: the 80% warning
    assert (result.warnings, result.breaches) == (1, 0)
    assert await next_at(runtime, number) == minutes(6.5)
    assert (await tick(runtime, minutes(6.5))).breaches == 1
    s = await summary(runtime, number, minutes(7))
    assert s["policy"] == "two-minutes"
    assert s["resolution"]["state"] == "breached" and sla_state(s) == "breached"
    async with runtime.sessions() as session:
        row = (await session.execute(select(OutboxRow).where(
            OutboxRow.kind == "sla_breach"))).scalar_one()
    assert (row.template, row.recipients, row.status) == ("sla_breach", [ADMIN], "pending")
    assert row.context["ticket"] == "TKT-000001" and row.context["clock"] == "resolution"
    assert row.message_id.startswith("<hd.1.")


async def test_serve_ticks_until_stopped(runtime: Runtime) -> None:
    clock = Clock(runtime.clock() - timedelta(hours=1))
    await open_ticket(runtime, clock, category="billing")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(runtime, stop))
    for _ in range(200):
        if len(await alerts(runtime)) == 1:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await alerts(runtime) == [("sla_breach", [ADMIN], "resolution")]


@pytest.mark.postgres
async def test_two_daemons_on_postgresql_fire_each_event_exactly_once(
        tmp_path: Path, pg_url: str) -> None:
    settings = with_policies(make_settings(tmp_path, pg_url), batch_size=3)
    first = await Runtime.open(settings)
    second = await Runtime.open(settings, migrate=False)
    try:
        clock = Clock(T0)
        for _ in range(25):
            await open_ticket(first, clock)
        for at in (minutes(50), minutes(70), minutes(200), minutes(250)):
            a, b = await asyncio.gather(tick(first, at), tick(second, at))
            assert a.tickets + b.tickets == 25
        async with first.sessions() as session:
            counts = dict((await session.execute(select(
                OutboxRow.kind, func.count()).group_by(OutboxRow.kind))).all())
            per_ticket = set((await session.execute(select(func.count()).select_from(
                OutboxRow).group_by(OutboxRow.ticket_id, OutboxRow.kind,
                                    OutboxRow.context["clock"].as_string()))).scalars())
        # the weekly report rides on the same ticks: at most once, whichever daemon sends
        assert counts.pop("report", 0) <= 1
        assert counts == {"sla_warning": 50, "sla_breach": 50}  # 25 tickets x 2 clocks
        assert per_ticket == {1}
    finally:
        await first.close()
        await second.close()


def test_sla_cli_status_tick_and_policies(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sqlite_url(tmp_path))

    async def prepare() -> None:
        rt = await Runtime.open(settings)
        try:
            await open_ticket(rt, Clock(T0))
        finally:
            await rt.close()
    asyncio.run(prepare())
    config = ["--config", str(tmp_path / "helpdesk.toml")]
    runner = CliRunner()
    out = runner.invoke(sla, ["status", "TKT-000001", "--json", "--at", "2026-03-02T11:00:00Z",
                              *config], catch_exceptions=False)
    data = json.loads(out.output)
    assert data["policy"] == "default"  # Mon-Fri 09-17 UTC, normal: 240 / 2400 minutes
    assert data["first_response"]["due_at"] == "2026-03-02T14:00:00+00:00"
    assert data["first_response"]["state"] == "on_track"
    out = runner.invoke(sla, ["tick", "--at", "2026-03-02T13:13:00+00:00", *config],
                        catch_exceptions=False)
    assert out.output.strip().endswith("1 tickets evaluated, 1 warnings, 0 breaches fired")
    out = runner.invoke(sla, ["policies", "--json", *config], catch_exceptions=False)
    policies = json.loads(out.output)
    assert [p["name"] for p in policies] == ["default"]
    assert policies[0]["hours"][0] == ["09:00", "17:00"] and policies[0]["hours"][5] is None


def plain(mail: Any) -> str:
    return str(mail.message.get_body(("plain",)).get_content())


async def test_breach_mail_reaches_the_smtp_sink_through_the_responders(
        tmp_path: Path, db_url: str) -> None:
    """The end-to-end path: 2-minute 24x7 target, paused, resumed, breached, mail delivered."""
    sink = SmtpSink()
    sink.start()
    settings = with_policies(make_settings(
        tmp_path, db_url, outbound={"host": sink.host, "port": sink.port}))
    rt = await Runtime.open(settings)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(rt, stop, WorkerOptions(poll_interval=0.05)))
    try:
        clock = Clock(T0)
        number = await open_ticket(rt, clock, category="billing")
        await change(rt, clock, number, minutes(1), status="On Hold")
        await change(rt, clock, number, minutes(30), status="Open")
        assert (await tick(rt, minutes(30.9))).breaches == 0
        assert (await tick(rt, minutes(31))).breaches == 1
        [mail] = await asyncio.to_thread(
            sink.wait_for, lambda m: "sla breached" in plain(m).lower(), 20.0)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        await rt.close()
        sink.stop()
    assert mail.rcpt_tos == (ADMIN,)
    assert mail.subject == "[TKT-000001] Printer on fire"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    body = plain(mail)
    assert "TKT-000001" in body and "resolution" in body
    assert minutes(31).isoformat() in body  # due: 1 minute before the hold, 1 after


async def test_an_automation_escalates_an_urgent_ticket_on_its_breach(
        tmp_path: Path, db_url: str) -> None:
    from helpdesk.config import Automation, AutomationAction, AutomationConditions, TeamSettings

    settings = dataclasses.replace(
        with_policies(make_settings(tmp_path, db_url)),
        teams=(TeamSettings("support", members=("bob@support.example.com",)),),
        automations=(Automation(
            "escalate breaches", on="sla_breached",
            when=AutomationConditions(priority="urgent"),
            actions=(AutomationAction(set={"priority": "high"}),
                     AutomationAction(tag="+escalated"),
                     AutomationAction(assign="team:support"))),))
    rt = await Runtime.open(settings)
    try:
        async with rt.sessions() as session, session.begin():
            await add_agent(session, "bob@support.example.com")
        clock = Clock(T0)
        urgent = await open_ticket(rt, clock, priority="urgent")
        normal = await open_ticket(rt, clock)
        # both first responses breached, and the urgent ticket's resolution: the
        # automation runs on the first breach only (the ticket is no longer urgent after)
        result = await tick(rt, minutes(70))
        assert result.breaches == 3
        async with rt.sessions() as session:
            tickets = {t.number: t for t in (await session.execute(select(Ticket))).unique()
                       .scalars()}
            fired = (await session.execute(select(AuditEvent.ticket_id).where(
                AuditEvent.action == "automation.fired",
                AuditEvent.actor == "system:automation:escalate breaches"))).scalars().all()
        assert (tickets[urgent].priority, tickets[urgent].assignee is not None) == (
            "high", True)
        assert (tickets[normal].priority, tickets[normal].assignee) == ("normal", None)
        assert fired == [tickets[urgent].id]
    finally:
        await rt.close()


async def test_a_silent_requester_is_reminded_once_then_the_ticket_is_resolved(
        runtime: Runtime) -> None:
    """The shipped defaults, on the tick: 24 business hours after the last public message
    of a Pending ticket a reminder, after 56 the ticket is resolved (round-the-clock
    calendar here, so business hours are hours)."""
    clock = Clock(T0)
    number = await open_ticket(runtime, clock)
    await change(runtime, clock, number, minutes(5), status="Pending", reply=True)
    hour = 60

    async def mails(template: str) -> list[list[str]]:
        async with runtime.sessions() as session:
            return [row.recipients for row in (await session.execute(select(OutboxRow).where(
                OutboxRow.template == template))).scalars()]

    await tick(runtime, minutes(5 + 23 * hour))
    assert await mails("reminder") == []
    await tick(runtime, minutes(5 + 25 * hour))
    await tick(runtime, minutes(5 + 26 * hour))
    assert await mails("reminder") == [["alice@example.org"]]  # once per silence
    await tick(runtime, minutes(5 + 57 * hour))
    async with runtime.sessions() as session:
        ticket = (await session.execute(select(Ticket).where(
            Ticket.number == number))).unique().scalar_one()
    assert ticket.status == "Resolved"
    assert await mails("resolved") == [["alice@example.org"]]  # the requester is told


async def test_the_shipped_automations_can_be_switched_off(tmp_path: Path, db_url: str) -> None:
    from helpdesk.config import AutomationDefaults

    settings = dataclasses.replace(
        with_policies(make_settings(tmp_path, db_url)),
        automation_defaults=AutomationDefaults(pending_reminder_hours=0,
                                               pending_resolve_hours=0,
                                               urgent_breach_to_lead=False))
    rt = await Runtime.open(settings)
    try:
        clock = Clock(T0)
        number = await open_ticket(rt, clock)
        await change(rt, clock, number, minutes(5), status="Pending", reply=True)
        await tick(rt, minutes(60 * 24 * 10))
        async with rt.sessions() as session:
            status = (await session.execute(select(Ticket.status))).scalar_one()
            kinds = set((await session.execute(select(OutboxRow.template))).scalars())
        assert status == "Pending" and "reminder" not in kinds
    finally:
        await rt.close()
