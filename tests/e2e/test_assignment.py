"""Auto-assignment through the real paths: mail over SMTP, agent commands, the CLI.

Each test writes ``[[teams]]`` and ``[[assignment]]`` into a config file, starts the
gateway on it (SQLite and PostgreSQL) and sends mail with a real SMTP client.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import select

from helpdesk.cli import cli
from helpdesk.config import load_settings
from helpdesk.directory import add_agent
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import Agent, AuditEvent, Ticket
from helpdesk.runtime import Runtime
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from tests.conftest import make_settings

SUPPORT = "support@support.example.com"
ANN, BOB, CAROL, DAN = (f"{n}@support.example.com" for n in ("ann", "bob", "carol", "dan"))
TEAM = f"""
[[teams]]
name = "support"
members = ["{ANN}", "{BOB}", "{CAROL}"]
lead = "{DAN}"

[[teams]]
name = "accounts"
members = ["{DAN}"]
"""
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)

Desk = tuple[Runtime, Callable[..., Awaitable[None]], Path]


@pytest.fixture
async def desk_for(tmp_path: Path, db_url: str) -> AsyncIterator[Callable[[str],
                                                                      Awaitable[Desk]]]:
    opened: list[tuple[Runtime, Any]] = []

    async def open_desk(rules: str) -> Desk:
        make_settings(tmp_path, db_url)
        cfg = tmp_path / "helpdesk.toml"
        cfg.write_text(cfg.read_text() + TEAM + rules)
        settings = load_settings(cfg, environ={})
        rt = await Runtime.open(settings, clock=lambda: NOW)
        async with rt.sessions() as session, session.begin():
            for email in (ANN, BOB, CAROL, DAN):
                await add_agent(session, email, email.split("@")[0].title())
        server = await start_smtp(make_gateway(rt), settings.smtp, port=0)
        opened.append((rt, server))
        port = server.sockets[0].getsockname()[1]

        async def send(subject: str = "Printer on fire", body: str = "It burns.",
                       sender: str = "alice@example.org", to: str = SUPPORT) -> None:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = sender, to, subject
            msg["Message-ID"] = make_msgid(domain="example.org")
            msg.set_content(body)
            await aiosmtplib.send(msg, sender=sender, recipients=[to], hostname="127.0.0.1",
                                  port=port)
        return rt, send, cfg

    yield open_desk
    for rt, server in opened:
        server.close()
        await server.wait_closed()
        await rt.close()


async def run_cli(args: list[str]) -> Any:
    """The real command line, in a thread (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def assignees(rt: Runtime) -> list[str | None]:
    async with rt.sessions() as session:
        rows = (await session.execute(select(Ticket).order_by(Ticket.number))).unique()
        return [t.assignee.email if t.assignee else None for t in rows.scalars()]


async def set_away(rt: Runtime, email: str, until: datetime | None) -> None:
    async with rt.sessions() as session, session.begin():
        agent = (await session.execute(select(Agent).where(Agent.email == email))).scalar_one()
        agent.away_until = until


ROUND_ROBIN = """
[[assignment]]
name = "everyone in turn"
team = "support"
method = "round_robin"
"""


async def test_round_robin_gives_each_of_three_agents_two_of_six_tickets(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for(ROUND_ROBIN)
    for n in range(6):
        await send(f"Problem {n}", sender=f"c{n}@example{n}.org")
    got = await assignees(rt)
    assert got == [ANN, BOB, CAROL, ANN, BOB, CAROL]
    async with rt.sessions() as session:
        actors = set((await session.execute(select(AuditEvent.actor).where(
            AuditEvent.action == "ticket.assignee"))).scalars())
    assert actors == {"system:rule:everyone in turn"}


async def test_an_away_agent_gets_none_and_is_back_after_the_date(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, cfg = await desk_for(ROUND_ROBIN)
    result = await run_cli(["--config", str(cfg), "agents", "away", BOB,
                                      "--until", "2026-12-24"])
    assert result.exit_code == 0, result.output
    for n in range(6):
        await send(f"Problem {n}", sender=f"c{n}@example{n}.org")
    assert Counter(await assignees(rt)) == {ANN: 3, CAROL: 3}
    listed = await run_cli(["--config", str(cfg), "agents", "list"])
    assert "away until 2026-12-24" in listed.output
    assert (await run_cli(["--config", str(cfg), "agents", "back", BOB])).exit_code == 0
    await send("After the holidays", sender="late@example9.org")
    await send("And another", sender="later@example8.org")
    assert (await assignees(rt))[-2:] == [ANN, BOB]  # the turn goes on from carol


async def test_first_matching_rule_wins_and_a_disabled_rule_is_skipped(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, cfg = await desk_for(f"""
[[assignment]]
name = "switched off"
enabled = false
assign = "{CAROL}"

[[assignment]]
name = "invoices to bob"
when = {{ subject = "/invoice|refund/" }}
assign = "{BOB}"

[[assignment]]
name = "example.net to ann"
when = {{ sender_domain = "example.net" }}
assign = "{ANN}"
""")
    await send("Your INVOICE 42 is wrong")
    await send("Printer", sender="x@example.net")
    await send("Nothing matches", sender="y@example.com")
    assert await assignees(rt) == [BOB, ANN, None]
    listed = await run_cli(["--config", str(cfg), "rules", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == "assignment rules:"
    assert "1. switched off" in lines[1] and " off " in lines[1] and "0 hit(s)" in lines[1]
    assert "2. invoices to bob" in lines[2] and "1 hit(s)" in lines[2]

    eml = cfg.parent / "refund.eml"
    eml.write_bytes(b"From: someone@example.net\r\nTo: support@support.example.com\r\n"
                    b"Subject: Refund for invoice 7\r\n\r\nPlease.\r\n")
    tested = await run_cli(["--config", str(cfg), "rules", "test", str(eml)])
    assert tested.exit_code == 0, tested.output
    assert "1. switched off: off" in tested.output
    assert f"2. invoices to bob: MATCH -> assign {BOB}" in tested.output
    assert "3. example.net to ann: would match, but an earlier rule decides" in tested.output
    assert len(await assignees(rt)) == 3, "rules test wrote nothing"


async def test_least_busy_and_the_lead_when_everyone_is_away(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for("""
[[assignment]]
name = "least busy"
team = "support"
method = "least_busy"
fallback = "lead"
""")
    await send("one", sender="a@example1.org")   # all at 0: the first in the team's order
    await send("two", sender="b@example2.org")   # ann has one: bob
    await send("three", sender="c@example3.org")  # carol
    async with rt.sessions() as session, session.begin():
        ticket = (await session.execute(select(Ticket).where(Ticket.number == 2))).unique()
        ticket.scalar_one().status = "Resolved"  # bob has none open now
    await send("four", sender="d@example4.org")
    assert await assignees(rt) == [ANN, BOB, CAROL, BOB]
    for email in (ANN, BOB, CAROL):
        await set_away(rt, email, NOW + timedelta(days=3))
    await send("five", sender="e@example5.org")
    assert (await assignees(rt))[-1] == DAN  # the team's lead


async def test_category_method_maps_the_category_to_a_team(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for("""
[[queues]]
address = "billing@support.example.com"
category = "billing"

[[assignment]]
name = "by category"
method = "category"
team = "support"
categories = { billing = "accounts" }
""")
    await send("Invoice", to="billing@support.example.com")
    await send("Printer")
    assert await assignees(rt) == [DAN, ANN]


async def test_assign_auto_and_away_by_agent_mail(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    rt, send, _ = await desk_for(f"""
[[assignment]]
name = "refunds"
when = {{ body = "refund" }}
assign = "{CAROL}"
""")
    await send("Printer", body="It burns.")
    assert await assignees(rt) == [None]
    async with rt.sessions() as session:
        bob = (await session.execute(select(Agent).where(Agent.email == BOB))).scalar_one()
        carol = (await session.execute(select(Agent).where(Agent.email == CAROL))).scalar_one()
    signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=carol.id)
    await send("Re: [TKT-000001] Printer", body="#away until 2026-12-24\n", sender=CAROL,
               to=signed)
    async with rt.sessions() as session:
        away = (await session.execute(select(Agent.away_until).where(
            Agent.email == CAROL))).scalar_one()
    assert away == datetime(2026, 12, 24, tzinfo=UTC)
    await set_away(rt, CAROL, None)
    async with rt.sessions() as session, session.begin():
        from helpdesk.tickets import TicketService

        svc = TicketService.for_runtime(session, rt)
        ticket = await svc.get(1)
        await svc.reply(ticket, kind="public", text="It is about a refund.",
                        actor=__import__("helpdesk.audit").audit.SYSTEM,
                        author_contact_id=ticket.requester_id)
    signed = make_reply_address(SUPPORT, 1, secret="test-secret", agent_id=bob.id)
    await send("Re: [TKT-000001] Printer", body="#assign auto\n", sender=BOB, to=signed)
    assert await assignees(rt) == [None], "the rule reads the first message only"
    await send("Refund please", body="I want a refund.", sender="z@example.org")
    assert (await assignees(rt))[-1] == CAROL


async def test_rules_check_names_each_mistake_and_the_loader_refuses_bad_rules(
        desk_for: Callable[[str], Awaitable[Desk]], tmp_path: Path) -> None:
    _, _, cfg = await desk_for("""
[[assignment]]
name = "to a stranger"
assign = "nobody@nowhere.example"
""")
    checked = await run_cli(["--config", str(cfg), "rules", "check"])
    assert checked.exit_code == 2
    assert "'to a stranger': nobody@nowhere.example is not an agent" in checked.output
    bad = tmp_path / "bad.toml"
    for rules, says in (
            ('[[assignment]]\nname = "x"\nteam = "nope"\n', "unknown team 'nope'"),
            ('[[assignment]]\nname = "y"\nwhen = { subject = "/(unclosed/" }\nassign = "a@b.c"\n',
             "bad regular expression"),
            ('[[assignment]]\nname = "z"\nwhen = { colour = "red" }\nassign = "a@b.c"\n',
             "unknown setting 'assignment[0].when.colour'"),
            ('[[automations]]\nname = "m"\non = "assigned"\n'
             'actions = [ { mail = { to = "requester", template = "nope" } } ]\n',
             "[[automations]] 'm': unknown template 'nope'"),
            ('[[automations]]\nname = "t"\non = "whenever"\n',
             "'automations[0].on' must be one of")):
        bad.write_text(cfg.read_text().split("[[assignment]]")[0] + rules)
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "helpdesk", "--config", str(bad), "rules",
                             "check"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and says in result.stderr, result.stderr


@pytest.mark.postgres
async def test_two_gateway_processes_share_the_turn_fairly(tmp_path: Path, pg_url: str) -> None:
    """Two `helpdesk mailgate` processes on one PostgreSQL, 200 mails at once: the
    round robin's turn row is locked while it moves, so no turn is handed out twice."""
    make_settings(tmp_path, pg_url)
    base = (tmp_path / "helpdesk.toml").read_text() + TEAM + ROUND_ROBIN
    rt = await Runtime.open(load_settings(tmp_path / "helpdesk.toml", environ={}))
    async with rt.sessions() as session, session.begin():
        for email in (ANN, BOB, CAROL, DAN):
            await add_agent(session, email)
    procs, ports = [], []
    try:
        for n in range(2):
            port = free_port()
            cfg = tmp_path / f"gateway{n}.toml"
            cfg.write_text(base.replace('port = 0', f'port = {port}'))
            procs.append(subprocess.Popen([sys.executable, "-m", "helpdesk", "--config",
                                           str(cfg), "mailgate"], cwd=tmp_path))
            ports.append(port)
        for port in ports:
            await wait_for_port(port)

        for start in range(0, 200, 20):
            await asyncio.gather(*(send_problem(ports[n % 2], n)
                                   for n in range(start, start + 20)))
        counts = Counter(await assignees(rt))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        await rt.close()
    assert sum(counts.values()) == 200 and None not in counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts


async def send_problem(port: int, n: int) -> None:
    """Customer ``n``'s mail (its own sender and domain) to the gateway on ``port``."""
    msg = EmailMessage()
    msg["From"], msg["To"] = f"c{n}@example{n}.org", SUPPORT
    msg["Subject"], msg["Message-ID"] = f"Problem {n}", make_msgid(domain="example.org")
    msg.set_content("Please help.")
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_reload_takes_new_rules_without_a_restart_and_refuses_a_broken_file(
        tmp_path: Path) -> None:
    """A real `helpdesk mailgate` process: `helpdesk reload` (SIGHUP) swaps the rules; a
    file with a mistake is refused by the command (exit 2) and the daemon keeps its rules."""
    from tests.conftest import sqlite_url

    make_settings(tmp_path, sqlite_url(tmp_path))
    cfg = tmp_path / "helpdesk.toml"
    port = free_port()
    base = cfg.read_text().replace("port = 0", f"port = {port}") + TEAM
    cfg.write_text(base + f'[[assignment]]\nname = "all to ann"\nassign = "{ANN}"\n')
    rt = await Runtime.open(load_settings(cfg, environ={}))
    async with rt.sessions() as session, session.begin():
        for email in (ANN, BOB, CAROL, DAN):
            await add_agent(session, email)
    proc = subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(cfg),
                             "mailgate"], cwd=tmp_path)
    try:
        await wait_for_port(port)

        async def send(n: int) -> None:
            await send_problem(port, n)

        await send(1)
        cfg.write_text(base + f'[[assignment]]\nname = "all to bob"\nassign = "{BOB}"\n')
        told = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "helpdesk", "--config", str(cfg), "reload"],
            capture_output=True, text=True, timeout=60)
        assert told.returncode == 0 and "told 1 daemon(s)" in told.stdout, told.stderr
        for _ in range(50):  # the signal is handled on the daemon's loop
            await send(2)
            if (await assignees(rt))[-1] == BOB:
                break
            await asyncio.sleep(0.1)
        cfg.write_text(base + '[[assignment]]\nname = "broken"\nteam = "nope"\n')
        refused = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "helpdesk", "--config", str(cfg), "reload"],
            capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "unknown team 'nope'" in refused.stderr
        await send(3)
        got = await assignees(rt)
        assert got[0] == ANN and got[-1] == BOB  # before, after, and after the refusal
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        await rt.close()


async def test_a_sighup_with_a_broken_file_keeps_the_rules_and_says_why(
        desk_for: Callable[[str], Awaitable[Desk]]) -> None:
    from helpdesk.daemon import reload_rules

    rt, _, cfg = await desk_for(ROUND_ROBIN)
    good = cfg.read_text()
    cfg.write_text(good + '[[assignment]]\nname = "x"\nteam = "nope"\n')
    with structlog.testing.capture_logs() as logs:
        reload_rules(rt)
    assert [r.name for r in rt.settings.assignment] == ["everyone in turn"]
    assert any(e["event"] == "daemon.reload_refused" and "nope" in e["error"] for e in logs)
    cfg.write_text(good.replace('method = "round_robin"', 'method = "least_busy"'))
    reload_rules(rt)
    assert rt.settings.assignment[0].method == "least_busy"
