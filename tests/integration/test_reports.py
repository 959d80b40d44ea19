"""Reports against a history built at controlled instants, every figure worked out by
hand below, on SQLite and PostgreSQL (issue "Reports", item 6's arithmetic).

The desk's calendar is the default policy's: Monday to Friday, 09:00-17:00 UTC. All the
work happens on Monday 2026-11-23 between 10:00 and 12:30, so business minutes equal
wall-clock minutes except where a ticket waits in Pending.

    T1 Alice   10:00 opened; 10:30 Bob answers; 12:00 resolved; 12:30 rated 5 "Great"
    T2 Dan     10:00 opened (other.example); 10:10 Pending; 11:10 Dan writes (Open again);
               11:20 Bob answers; 11:40 resolved; 12:00 rated 2 "Slow"
    T3 Eve     10:00 opened; never answered
    T4 Eve     10:00 opened; 10:05 merged into T3 (counts nowhere)
    T5 Fay     10:00 opened; 10:20 Bob answers; 10:30 resolved; 10:40 Fay writes
               (reopened); 11:30 resolved again
    T6 Gil     Sunday 2026-11-22 10:00 opened; still open (the backlog)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk.audit import Actor
from helpdesk.cli import cli
from helpdesk.config import ReportSettings, Settings
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.reports import Scope, report
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from sla_daemon.engine import tick

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)
SCOPE = Scope(MONDAY, MONDAY + timedelta(days=1))


def at(hh: int, mm: int = 0, day: datetime = MONDAY) -> datetime:
    return day + timedelta(hours=hh, minutes=mm)


@pytest.fixture
async def history(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await make_history(settings)
    try:
        yield rt
    finally:
        await rt.close()


async def make_history(settings: Settings) -> Runtime:
    """The runtime of a desk holding the history above, its clock at Monday 13:00."""
    now = [at(10)]
    rt = await Runtime.open(settings, clock=lambda: now[0])
    try:
        async with rt.sessions() as session, session.begin():
            bob = await add_agent(session, "bob@support.example.com", "Bob")
            bob_acts = Actor("agent", bob.email, bob.id)
            svc = TicketService.for_runtime(session, rt)
            people = {n: await get_or_create_contact(session, f"{n}@{d}", n.title())
                      for n, d in (("alice", "example.org"), ("dan", "other.example"),
                                   ("eve", "example.org"), ("fay", "example.org"),
                                   ("gil", "example.org"))}

            async def opened(who: str, subject: str) -> Any:
                ticket, _ = await svc.open_ticket(
                    requester=people[who], subject=subject, text="help",
                    actor=Actor("contact", people[who].email))
                return ticket

            async def answer(ticket: Any) -> None:
                await svc.add_message(ticket, kind="public", text="on it", actor=bob_acts,
                                      author_agent=bob)

            async def writes(ticket: Any, who: str) -> None:
                await svc.add_message(ticket, kind="public", text="more",
                                      actor=Actor("contact", people[who].email),
                                      author_contact=people[who])

            now[0] = MONDAY - timedelta(hours=14)  # Sunday 10:00
            await opened("gil", "T6")
            now[0] = at(10)
            t1, t2, t3, t4, t5 = [await opened(w, f"T{n}") for n, w in (
                (1, "alice"), (2, "dan"), (3, "eve"), (4, "eve"), (5, "fay"))]
            for instant, step in (
                    (at(10, 5), lambda: svc.merge(t4, t3, bob_acts)),
                    (at(10, 10), lambda: svc.set_status(t2, "Pending", bob_acts)),
                    (at(10, 20), lambda: answer(t5)),
                    (at(10, 30), lambda: answer(t1)),
                    (at(10, 30), lambda: svc.set_status(t5, "Resolved", bob_acts)),
                    (at(10, 40), lambda: writes(t5, "fay")),
                    (at(11, 10), lambda: writes(t2, "dan")),
                    (at(11, 20), lambda: answer(t2)),
                    (at(11, 30), lambda: svc.set_status(t5, "Resolved", bob_acts)),
                    (at(11, 40), lambda: svc.set_status(t2, "Resolved", bob_acts)),
                    (at(12), lambda: svc.set_status(t1, "Resolved", bob_acts)),
                    (at(12), lambda: svc.rate(t2, people["dan"], 2, "Slow")),
                    (at(12, 30), lambda: svc.rate(t1, people["alice"], 5, "Great"))):
                now[0] = instant
                await step()
            await svc.tx.flush()
        now[0] = at(13)
        # the SLA daemon brings the clocks up to date (its scheduled report is tested on
        # its own: off here)
        rt.settings = dataclasses.replace(rt.settings, reports=ReportSettings(schedule="off"))
        await tick(rt, at(13))
    except BaseException:
        await rt.close()
        raise
    return rt


async def test_overview_by_hand(history: Runtime) -> None:
    async with history.read_sessions() as session:
        o = await report(session, history.settings, "overview", SCOPE)
    assert (o["created"], o["resolved"], o["open"], o["backlog_start"]) == (4, 3, 2, 1)
    # first responses: T1 30, T2 80, T5 20 -> sorted 20 30 80; p90 at rank 1.8
    assert {k: o["first_response"][k] for k in ("count", "mean", "median", "p90")} == {
        "count": 3, "mean": 43.3, "median": 30.0, "p90": 70.0}
    # resolutions (the last one): T1 120, T2 100, T5 90
    assert {k: o["resolution"][k] for k in ("count", "mean", "median", "p90")} == {
        "count": 3, "mean": 103.3, "median": 100.0, "p90": 116.0}
    # business: T2's hour in Pending does not count: T1 30, T2 20, T5 20
    assert o["first_response"]["business"] == {"count": 3, "mean": 23.3, "median": 20.0,
                                               "p90": 28.0}
    # T1 120; T2 100 - 60 paused = 40; T5 runs 10:00-10:30 and 10:40-11:30 = 80
    assert o["resolution"]["business"] == {"count": 3, "mean": 80.0, "median": 80.0,
                                           "p90": 112.0}
    # every clock decided by Monday 13:00 was met: T3's first answer still runs
    assert o["sla"] == {"first_response": {"clocks": 3, "breached": 0, "percent": 100.0},
                        "resolution": {"clocks": 3, "breached": 0, "percent": 100.0}}
    assert o["csat"] == {"average": 3.5, "ratings": 2, "response_rate": 66.7}
    assert o["range"] == {"since": "2026-11-23T00:00:00+00:00",
                          "until": "2026-11-24T00:00:00+00:00"}
    assert set(o) == {"range", "created", "resolved", "open", "backlog_start",
                      "first_response", "resolution", "sla", "csat"}


async def test_csat_agents_and_channels_by_hand(history: Runtime) -> None:
    async with history.read_sessions() as session:
        c = await report(session, history.settings, "csat", SCOPE)
        a = await report(session, history.settings, "agents", SCOPE)
        ch = await report(session, history.settings, "channels", SCOPE)
    assert (c["count"], c["average"]) == (2, 3.5)
    assert c["distribution"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}
    assert c["trend"] == [{"week": "2026-11-23", "ratings": 2, "average": 3.5}]
    assert c["by_agent"] == [{"name": "(none)", "ratings": 2, "average": 3.5}]
    assert c["by_organization"] == [
        {"name": "example.org", "ratings": 1, "average": 5.0},
        {"name": "other.example", "ratings": 1, "average": 2.0}]
    assert c["comments"] == [{"ticket": "TKT-000003", "score": 2, "comment": "Slow"},
                             {"ticket": "TKT-000002", "score": 5, "comment": "Great"}]
    # nobody was assigned: Bob answered, but handled counts his assigned tickets
    assert a["agents"] == [{"agent": "bob@support.example.com", "name": "Bob", "handled": 0,
                            "replies": 3, "first_response_median": None,
                            "resolution_median": None, "csat_average": None,
                            "open_load": 0}]
    assert ch["channels"] == [
        {"channel": "email", "tickets": 4, "resolution_median": 100.0},
        *({"channel": c, "tickets": 0, "resolution_median": None}
          for c in ("web", "phone", "chat", "internal"))]


async def test_an_empty_range_gives_zeros_and_no_data(history: Runtime) -> None:
    empty = Scope(MONDAY + timedelta(days=7), MONDAY + timedelta(days=8))
    async with history.read_sessions() as session:
        o = await report(session, history.settings, "all", empty)
    assert (o["overview"]["created"], o["overview"]["resolved"]) == (0, 0)
    assert o["overview"]["first_response"]["median"] is None
    assert o["overview"]["csat"] == {"average": None, "ratings": 0, "response_rate": None}
    assert o["overview"]["open"] == 2  # still open a week later


def test_the_command_line_forms(history: Runtime, tmp_path: Path) -> None:
    args = ["--config", history.settings.source, "report"]
    rng = ["--since", "2026-11-23", "--until", "2026-11-24"]
    as_json = CliRunner().invoke(cli, [*args, "overview", *rng, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["created"] == 4
    table = CliRunner().invoke(cli, [*args, "overview", *rng])
    assert "created" in table.output and "first_response.median" in table.output
    out = tmp_path / "channels.csv"
    CliRunner().invoke(cli, [*args, "channels", *rng, "--format", "csv", "-o", str(out)])
    assert out.read_text().splitlines()[0] == "channel,tickets,resolution_median"
    narrowed = CliRunner().invoke(cli, [*args, "overview", *rng, "--organization",
                                        "other.example", "--format", "json"])
    assert json.loads(narrowed.output)["created"] == 1
    typed = CliRunner().invoke(cli, [*args, "overview", *rng, "--type", "bug",
                                     "--format", "json"])
    assert json.loads(typed.output)["created"] == 0  # every ticket here is Other
    other = CliRunner().invoke(cli, [*args, "overview", *rng, "--type", "other",
                                     "--format", "json"])
    assert json.loads(other.output)["created"] == 4
    wrong = CliRunner().invoke(cli, [*args, "overview", "--type", "nope"])
    assert wrong.exit_code == 2 and "known: Bug" in wrong.output


def test_the_ticket_export_and_the_dashboard(history: Runtime, tmp_path: Path) -> None:
    import csv

    cfg = ["--config", history.settings.source]
    out = tmp_path / "tickets.csv"
    done = CliRunner().invoke(cli, [*cfg, "tickets", "export", "--status", "resolved",
                                    "-o", str(out)])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["number", "subject", "requester", "organization", "status",
                             "priority", "category", "type", "assignee", "created",
                             "first_response", "resolved", "sla", "csat"]
    by_number = {r["number"]: r for r in rows}
    assert sorted(by_number) == ["TKT-000002", "TKT-000003", "TKT-000006"]
    t1 = by_number["TKT-000002"]  # Alice's, numbered after Gil's Sunday ticket
    assert (t1["subject"], t1["requester"], t1["organization"], t1["csat"]) == (
        "T1", "alice@example.org", "example.org", "5")
    assert t1["first_response"].startswith("2026-11-23T10:30")
    assert t1["resolved"].startswith("2026-11-23T12:00")

    shown = CliRunner().invoke(cli, [*cfg, "dashboard", "--json"])
    figures = json.loads(shown.output)
    assert (figures["open"], figures["overdue"], figures["created_today"]) == (2, 0, 0)
    cards = CliRunner().invoke(cli, [*cfg, "dashboard"])
    assert "Open tickets" in cards.output and "SLA breaches today" in cards.output


async def test_trends_by_hand(history: Runtime) -> None:
    async with history.read_sessions() as session:
        t = await report(session, history.settings, "trends", SCOPE)
    assert t["per"] == "day" and t["volume"] == [{"period": "2026-11-23", "tickets": 4}]
    assert t["by_status"] == {"Resolved": 3, "Open": 1}
    assert (t["by_priority"], t["by_category"], t["by_type"]) == (
        {"normal": 4}, {"general": 4}, {"Other": 4})
    long = Scope(MONDAY - timedelta(days=70), MONDAY + timedelta(days=1))
    async with history.read_sessions() as session:
        weekly = await report(session, history.settings, "trends", long)
    # by week (Mondays): Gil's Sunday ticket falls in the week before
    assert weekly["per"] == "week" and weekly["volume"] == [
        {"period": "2026-11-16", "tickets": 1}, {"period": "2026-11-23", "tickets": 4}]


WEEK = Scope(MONDAY, MONDAY + timedelta(days=3))  # Monday to Wednesday


async def test_sla_and_health_by_hand(history: Runtime) -> None:
    # Wednesday noon: T3 and T6 have waited 1080 and 1140 business minutes for a first
    # answer, over the normal priority's 240
    wednesday = at(12, 0, MONDAY + timedelta(days=2))
    history.clock = lambda: wednesday
    await tick(history, wednesday)
    async with history.read_sessions() as session:
        s = await report(session, history.settings, "sla", WEEK)
        h = await report(session, history.settings, "health", WEEK)
    assert s["by_priority"] == [
        {"name": "normal", "clock": "first_response", "clocks": 4, "breached": 1,
         "percent": 75.0},
        {"name": "normal", "clock": "resolution", "clocks": 3, "breached": 0,
         "percent": 100.0}]
    assert [(p["name"], p["clock"]) for p in s["by_policy"]] == [
        ("default", "first_response"), ("default", "resolution")]
    # T6's four business hours ran out at Monday 13:00 (09:00 + 240), T3's on Wednesday
    assert s["breaches_per_day"] == [{"day": "2026-11-23", "breaches": 1},
                                     {"day": "2026-11-25", "breaches": 1}]
    assert [(b["ticket"], b["clock"]) for b in s["breaching_now"]] == [
        ("TKT-000001", "first_response"), ("TKT-000004", "first_response")]
    # other.example: Dan rated 2 (3 + 1 points); example.org: T3's breach (1) and T5
    # reopened, one of its three tickets (2)
    assert h["organizations"] == [
        {"organization": "other.example", "score": 4.0, "tickets": 1,
         "reasons": ["average rating 2.0 over 1 rating(s)"]},
        {"organization": "example.org", "score": 3.0, "tickets": 3,
         "reasons": ["1 SLA breach(es)", "1 of 3 ticket(s) reopened"]}]


RANGE = ["--since", "2026-11-16", "--until", "2026-11-26"]


def cli_on_history(settings: Settings, *args: str) -> None:
    """Build the known history, then run the command line on it, in a thread of their
    own: a browser's driver may hold this thread's event loop."""
    async def build() -> None:
        rt = await make_history(settings)
        await rt.close()

    def work() -> None:
        asyncio.run(build())
        result = CliRunner().invoke(cli, ["--config", settings.source, *args])
        assert result.exit_code == 0, result.output

    with ThreadPoolExecutor(1) as thread:
        thread.submit(work).result()


def report_file(settings: Settings, fmt: str, out: Path) -> None:
    cli_on_history(settings, "report", "all", *RANGE, "--format", fmt, "-o", str(out))


def export_pdf(settings: Settings, out: Path) -> None:
    cli_on_history(settings, "tickets", "export", "--format", "pdf", "-o", str(out))


async def test_an_agents_figures_by_hand(history: Runtime) -> None:
    from sqlalchemy import select

    from helpdesk.models import Agent, Ticket

    async with history.sessions() as session, session.begin():
        svc = TicketService.for_runtime(session, history)
        bob = (await session.execute(select(Agent))).scalar_one()
        for number in (2, 3, 4, 6):  # T1, T2, T3, T5
            ticket = (await session.execute(select(Ticket).where(
                Ticket.number == number))).unique().scalar_one()
            await svc.assign(ticket, bob, Actor("cli", "admin"))
    async with history.read_sessions() as session:
        [row] = (await report(session, history.settings, "agents", SCOPE))["agents"]
    # first responses 30, 80, 20 (T3 none) -> 30; resolutions 120, 100, 90 -> 100;
    # ratings 5 and 2; T3 still open
    assert row == {"agent": "bob@support.example.com", "name": "Bob", "handled": 4,
                   "replies": 3, "first_response_median": 30.0, "resolution_median": 100.0,
                   "csat_average": 3.5, "open_load": 1}
