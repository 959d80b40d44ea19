"""Saved views, filters, paging and history on the command line, on SQLite and PostgreSQL
(issue "The agent's desk by mail", items 1 and 4).

The desk is the agent-commands desk (a real SMTP gateway, Bob and Carol); its tickets are
shaped by agent mail and the SLA clocks by ``helpdesk sla tick --at``, as in production.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.e2e.test_agent_commands import Desk, desk, mail
from tests.e2e.test_ticket_model import run_cli

__all__ = ["desk"]


async def numbers(d: Desk, *args: str) -> list[str]:
    result = await run_cli(d.rt, "tickets", "list", *args, "--json")
    assert result.exit_code == 0, result.output
    return [t["number"][-1] for t in json.loads(result.output)]


@pytest.fixture
async def shaped(desk: Desk) -> Desk:
    """Six tickets (TKT-000001 is Alice's, from the desk):

    1 Bob's, urgent, tagged vip, Bug, due two days after it was made (overdue now)
    2 unassigned, urgent                    3 unassigned, critical, resolved
    4 Carol's, low, billing                 5 from another organization, In Progress
    6 Bob's, resolved
    """
    for n, sender in ((2, "Dan <dan@example.org>"), (3, "Eve <eve@example.org>"),
                      (4, "Fay <fay@example.org>"), (5, "Gil <gil@other.example>"),
                      (6, "Hal <hal@example.org>")):
        await desk.send(mail(f"Problem {n}", sender=sender))
    # the desk's clock stands at 2026-11-23; the CLI's is the real one, later than +2d
    await desk.from_bob("#assign me\n#priority urgent\n#tag vip\n#type bug\n#due +2d\n")
    await desk.from_bob("#priority urgent\n", number=2)
    await desk.from_bob("#priority critical\n#status resolved\n", number=3)
    await desk.from_bob("#assign carol@support.example.com\n#priority low\n"
                        "#category billing\n", number=4)
    await desk.from_bob("#status in progress\n", number=5)
    await desk.from_bob("#assign me\n#status resolved\n", number=6)
    return desk


async def test_the_saved_views(shaped: Desk) -> None:
    d = shaped
    assert await numbers(d, "--preset", "my-open", "--agent", d.bob.email) == ["1"]
    assert await numbers(d, "--preset", "urgent-unassigned") == ["2"]
    assert await numbers(d, "--preset", "overdue") == ["1"]
    assert await numbers(d, "--preset", "sla-breaching") == []
    later = (d.rt.clock() + timedelta(days=30)).isoformat()
    ticked = await run_cli(d.rt, "sla", "tick", "--at", later)
    assert ticked.exit_code == 0, ticked.output
    await d.send(mail("Fresh after the tick", sender="Ivy <ivy@example.org>"))
    # every ticket still open had a clock run out; resolved ones and the fresh one not
    assert await numbers(d, "--preset", "sla-breaching") == ["5", "4", "2", "1"]
    no_agent = await run_cli(d.rt, "tickets", "list", "--preset", "my-open")
    assert no_agent.exit_code == 2 and "give --agent EMAIL" in no_agent.output


async def test_the_filters(shaped: Desk) -> None:
    d = shaped
    assert await numbers(d, "--assignee", d.bob.email) == ["6", "1"]
    assert await numbers(d, "--unassigned") == ["5", "3", "2"]
    assert await numbers(d, "--priority", "URGENT", "--priority", "critical") == ["3", "2", "1"]
    assert await numbers(d, "--category", "Billing") == ["4"]
    assert await numbers(d, "--type", "bug") == ["1"]
    assert await numbers(d, "--organization", "other.example") == ["5"]
    assert await numbers(d, "--organization", "example.org", "--unassigned") == ["3", "2"]
    assert await numbers(d, "--tag", "VIP") == ["1"]
    assert await numbers(d, "--status", "resolved") == ["6", "3"]
    assert await numbers(d, "--status", "in_progress", "--status", "Open") == [
        "5", "4", "2", "1"]
    assert await numbers(d, "--preset", "my-open", "--agent", d.bob.email,
                         "--tag", "nope") == []
    now = d.rt.clock()
    assert await numbers(d, "--since", (now - timedelta(minutes=1)).isoformat()) == [
        "6", "5", "4", "3", "2", "1"]
    assert await numbers(d, "--until", (now - timedelta(minutes=1)).isoformat()) == []
    assert await numbers(d, "--limit", "2") == ["6", "5"]
    assert await numbers(d, "--limit", "2", "--offset", "2") == ["4", "3"]
    # the CLI evaluates the clocks at its own (real, later) time: every open one breached
    assert await numbers(d, "--sla", "breached", "--limit", "1", "--offset", "1") == ["4"]
    for flag, value, known in (("--status", "Closd", "Closed"), ("--priority", "asap", "low"),
                               ("--category", "x", "billing"), ("--type", "y", "Bug")):
        wrong = await run_cli(d.rt, "tickets", "list", flag, value)
        assert wrong.exit_code == 2 and f"'{value}' (known: " in wrong.output
        assert known in wrong.output


async def test_history_is_the_readable_timeline(shaped: Desk) -> None:
    text = (await run_cli(shaped.rt, "tickets", "history", "TKT-000004")).output.splitlines()
    assert "ticket.created" in text[0] and "contact:fay@example.org" in text[0]
    assert any(f"agent:{shaped.bob.email}" in line and "ticket.priority" in line
               and "priority=normal -> priority=low" in line for line in text)
    entries: list[dict[str, Any]] = json.loads((await run_cli(
        shaped.rt, "tickets", "history", "TKT-000004", "--json")).output)
    assert [e["action"] for e in entries][:2] == ["ticket.created", "message.public"]
    assigned = next(e for e in entries if e["action"] == "ticket.assignee")
    assert (assigned["before"], assigned["after"]) == (
        {"assignee": None}, {"assignee": "carol@support.example.com"})
    missing = await run_cli(shaped.rt, "tickets", "history", "TKT-000099")
    assert missing.exit_code != 0
