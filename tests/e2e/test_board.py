"""The daily board: once a working day per agent, at the configured hour in the instance
time zone, driven by ``helpdesk sla tick --at`` as the SLA daemon's tick drives it, and
once even with several daemons (issue "The agent's desk by mail", item 6). The mails go
through the real workers to an SMTP sink.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpdesk.board import send_boards
from helpdesk.models import OutboxRow
from helpdesk.runtime import Runtime
from tests.e2e.test_agent_commands import RELAY, _open_desk, mail
from tests.e2e.test_ticket_model import run_cli
from tests.fixtures.smtp_sink import SmtpSink, smtp_sink
from tests.integration.test_responders import wait_for, worker
from tests.integration.test_webhook import WORKER

__all__ = ["smtp_sink"]
BERLIN_MONDAY_0759 = "2026-12-07T06:59:00+00:00"  # 07:59 in Berlin (UTC+1)
BERLIN_MONDAY_0800 = "2026-12-07T07:00:00+00:00"


async def boards(rt: Runtime) -> list[OutboxRow]:
    from sqlalchemy import select

    async with rt.sessions() as session:
        return list((await session.execute(select(OutboxRow).where(
            OutboxRow.template == "agent_board").order_by(OutboxRow.id))).scalars())


async def test_the_board_arrives_once_a_working_day_at_the_hour(
        tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    outbound = {"host": smtp_sink.host, "port": smtp_sink.port}
    # the ticks run weeks after the tickets: the shipped Pending reminder and auto-resolve
    # would fire first, so they are off here
    quiet = {"pending_reminder_hours": 0, "pending_resolve_hours": 0}
    async for d in _open_desk(tmp_path, db_url, sections={"outbound": outbound,
                                                          "automation_defaults": quiet},
                              trusted_authserv_ids=[RELAY], trusted_relay_hosts=["127.0.0.1"]):
        await d.send(mail("Second", sender="Dan <dan@example.org>"))
        await d.send(mail("Third", sender="Eve <eve@example.org>"))
        await d.from_bob("#assign me\n")
        await d.from_bob("#assign me\n#status pending\n", number=2)
        await d.from_bob("#priority urgent\n", number=3)
        await run_cli(d.rt, "agents", "prefs", d.carol.email, "--no-board")

        early = await run_cli(d.rt, "sla", "tick", "--at", BERLIN_MONDAY_0759)
        assert early.exit_code == 0, early.output
        assert await boards(d.rt) == []
        await run_cli(d.rt, "sla", "tick", "--at", BERLIN_MONDAY_0800)
        await run_cli(d.rt, "sla", "tick", "--at", "2026-12-07T15:00:00+00:00")
        [board] = await boards(d.rt)
        assert board.to_addr == d.bob.email  # Carol said no
        columns = {c["name"]: [x["reference"] for x in c["cards"]]
                   for c in board.context["columns"]}
        assert columns == {"Open": ["TKT-000001"], "Pending": ["TKT-000002"],
                           "In Progress": [], "On Hold": []}
        assert [x["reference"] for x in board.context["urgent"]] == ["TKT-000003"]
        assert board.context["columns"][0]["cards"][0]["reply_to"] == d.signed(1)

        await run_cli(d.rt, "sla", "tick", "--at", "2026-12-12T09:00:00+00:00")  # Saturday
        assert len(await boards(d.rt)) == 1
        await run_cli(d.rt, "sla", "tick", "--at", "2026-12-14T07:30:00+00:00")  # Monday
        assert len(await boards(d.rt)) == 2

        # the CLI's ticks queued the boards on the real clock; so runs this worker
        sender = await Runtime.open(d.rt.settings)
        try:
            async with worker(sender, WORKER):
                got = await wait_for(smtp_sink, lambda m: "Your board for" in m.subject,
                                     count=2)
        finally:
            await sender.close()
        # the workers send in any order
        assert sorted(m.subject[:38] for m in got) == [
            "Your board for Monday 07 December 2026", "Your board for Monday 14 December 2026"]
        first = next(m.message for m in got if "07 December" in m.subject)
        text = first.get_body(("plain",))
        html = first.get_body(("html",))
        assert text is not None and html is not None
        assert "== Pending (1)" in text.get_content()
        assert "TKT-000002" in html.get_content() and "mailto:" in html.get_content()


async def test_several_daemons_send_one_board(tmp_path: Path, db_url: str) -> None:
    async for d in _open_desk(tmp_path, db_url):
        other = await Runtime.open(d.rt.settings)  # a second daemon on the same database
        try:
            from datetime import datetime

            at = datetime.fromisoformat(BERLIN_MONDAY_0800)
            sent = await asyncio.gather(*(send_boards(rt, at)
                                          for rt in (d.rt, other, d.rt, other)))
            assert sum(sent) == 2  # Bob and Carol, once each
            assert sorted(b.to_addr for b in await boards(d.rt)) == [
                d.bob.email, d.carol.email]
        finally:
            await other.close()
