"""Saved views, filters, paging and history on the command line, on SQLite and PostgreSQL
(issue "The agent's desk by mail", items 1 and 4).

The desk is the agent-commands desk (a real SMTP gateway, Bob and Carol); its tickets are
shaped by agent mail and the SLA clocks by ``helpdesk sla tick --at``, as in production.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from helpdesk.links import LinkSigner, Purpose
from helpdesk.models import AuditEvent, InboundSpool, Message, OutboxRow, Ticket
from portal_lite.app import create_app
from tests.e2e.test_agent_commands import BOB, RELAY, Desk, _ar, _open_desk, desk, mail
from tests.e2e.test_ticket_model import history, run_cli
from tests.fixtures.smtp_sink import ReceivedMessage, SmtpSink, smtp_sink
from tests.integration.test_responders import wait_for, worker
from tests.integration.test_webhook import WORKER

__all__ = ["desk", "smtp_sink"]


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


# -- search (item 2) ----------------------------------------------------------------------


async def found(d: Desk, words: str, *args: str) -> list[dict[str, Any]]:
    result = await run_cli(d.rt, "tickets", "search", words, *args, "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


async def test_search_ranks_snippets_notes_and_requesters(desk: Desk) -> None:
    await desk.send(mail("Fuser grinding", "The fuser grinds. The fuser is hot. Fuser!",
                         sender="Dan <dan@example.org>"))
    await desk.send(mail("Toner question", "Is the fuser covered by the warranty?",
                         sender="Eve Smith <eve@other.example>"))
    await desk.from_bob("#note\nCustomer mentioned the quarantined firmware blob.\n")
    hits = await found(desk, "fuser")
    assert [h["number"][-1] for h in hits] == ["2", "3"]  # the subject and most mentions first
    assert hits[0]["found_in"] == "subject" and "[Fuser]" in hits[0]["snippet"]
    assert "[fuser]" in hits[1]["snippet"] and hits[1]["found_in"] == "public"
    note = await found(desk, "QUARANTINED firmware")
    assert [(h["number"], h["found_in"]) for h in note] == [("TKT-000001", "internal")]
    assert "[quarantined] [firmware]" in note[0]["snippet"]
    assert [h["number"] for h in await found(desk, "eve smith")] == ["TKT-000003"]
    assert [h["number"] for h in await found(desk, "other.example")] == ["TKT-000003"]
    assert await found(desk, "fuser nowhere") == []
    assert await found(desk, '"); DROP TABLE tickets; --') == []
    assert [h["number"] for h in await found(desk, "fuser", "--organization",
                                             "other.example")] == ["TKT-000003"]
    text = (await run_cli(desk.rt, "tickets", "search", "warranty")).output
    assert "TKT-000003" in text and "[warranty]" in text


async def test_a_message_is_found_as_soon_as_it_is_committed(desk: Desk) -> None:
    await desk.send(mail("Re: [TKT-000001] Printer on fire", "Now the xylophone plays too."))
    assert [h["number"] for h in await found(desk, "xylophone")] == ["TKT-000001"]


# -- asking by mail (item 5) --------------------------------------------------------------


def _text(received: ReceivedMessage) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def test_list_and_search_by_mail_arrive_with_reply_addresses(
        tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> None:
    outbound = {"host": smtp_sink.host, "port": smtp_sink.port}
    async for d in _open_desk(tmp_path, db_url, sections={"outbound": outbound},
                              trusted_authserv_ids=[RELAY], trusted_relay_hosts=["127.0.0.1"]):
        await d.send(mail("Fuser grinding", "The fuser grinds.", sender="Dan <dan@example.org>"))
        await d.from_bob("#assign me\n")
        await d.from_bob("#priority urgent\n", number=2)
        # to the support address, authenticated by the trusted relay: answered, no ticket
        await d.send(mail("my queue", "#list my-open\n#list urgent-unassigned\n"
                          "#search grinding\n", sender=f"Bob <{BOB}>",
                          Authentication_Results=_ar(RELAY,
                                                     "dkim=pass header.d=support.example.com")))
        assert len(await d.rows(Ticket)) == 2
        # on a ticket's own reply address, among other commands
        await d.from_bob("#tag vip\n#list overdue\n")
        async with worker(d.rt, WORKER):
            got = await wait_for(smtp_sink, lambda m: (BOB in m.rcpt_tos
                                 and "#list" in m.subject) or "#search" in m.subject, count=4)
        by_subject = {m.subject: _text(m) for m in got}
        mine = by_subject["#list my-open: 1 ticket(s)"]
        assert "TKT-000001  Printer on fire" in mine and "alice@example.org" in mine
        assert f"answer it: {d.signed(1)}" in mine
        urgent = by_subject["#list urgent-unassigned: 1 ticket(s)"]
        assert "TKT-000002  Fuser grinding" in urgent and "urgent" in urgent
        assert f"answer it: {d.signed(2)}" in urgent
        found = by_subject["#search grinding: 1 ticket(s)"]
        assert "TKT-000002" in found and "[grinds]" not in found and "[grinding]" in found
        assert "#list overdue: 0 ticket(s)" in by_subject
        assert await d.tags(1) == ["vip"]

        # answering a line of the list is answering that ticket
        reply = mail("Re: #list my-open", "We are on it.", sender=f"Bob <{BOB}>",
                     to=d.signed(1))
        await d.send(reply, [d.signed(1)])
        [public] = await d.rows(Message, Message.author_agent_id == d.bob.id,
                                Message.kind == "public")
        assert public.ticket_id == (await d.ticket(1)).id


async def test_a_light_agent_may_still_ask_for_lists(desk: Desk) -> None:
    await run_cli(desk.rt, "agents", "role", desk.bob.email, "light")
    await desk.send(mail("q", "#list my-open\n", sender=f"Bob <{BOB}>",
                         Authentication_Results=_ar(RELAY,
                                                    "dkim=pass header.d=support.example.com")))
    [row] = await desk.rows(OutboxRow, OutboxRow.template == "agent_list")
    assert row.to_addr == BOB and row.ticket_id is None
    assert len(await desk.rows(Ticket)) == 1


# -- bulk changes (item 3) ----------------------------------------------------------------


async def test_bulk_dry_run_changes_nothing_then_applies_with_audit(shaped: Desk) -> None:
    d = shaped
    dry = await run_cli(d.rt, "tickets", "bulk", "--unassigned", "--status", "open",
                        "--status", "in progress", "--set", "priority=high", "type=billing",
                        f"assignee={d.carol.email}", "--add-tag", "triage", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "2 ticket(s): priority=high, type=Billing" in dry.output
    assert "TKT-000002: priority urgent -> high; type Other -> Billing; assignee none -> " \
        f"{d.carol.email}; +triage" in dry.output
    assert (await d.ticket(2)).priority == "urgent"
    done = await run_cli(d.rt, "tickets", "bulk", "--unassigned", "--status", "open",
                         "--status", "in progress", "--set", "priority=high", "type=billing",
                         f"assignee={d.carol.email}", "--add-tag", "triage")
    assert done.exit_code == 0, done.output
    assert "changed 2 of 2 ticket(s)" in done.output
    for n in (2, 5):
        t = await d.ticket(n)
        assert (t.priority, t.type, t.assignee_id) == ("high", "Billing", d.carol.id)
        assert "triage" in await d.tags(n)
    *_, change = await history(d, 2, "ticket.priority")  # Bob's #priority, then the bulk
    assert change.actor.startswith("cli:") and change.after == {"priority": "high"}
    by_ref = await run_cli(d.rt, "tickets", "bulk", "TKT-000001", "TKT-000004",
                           "--remove-tag", "vip", "--set", "status=pending")
    assert "changed 2 of 2 ticket(s)" in by_ref.output
    assert (await d.ticket(4)).status == "Pending" and await d.tags(1) == []


async def test_bulk_refuses_what_it_cannot_do(shaped: Desk) -> None:
    d = shaped
    for args, why in (
            (("TKT-000001", "--set", "colour=red"), "FIELD one of status"),
            (("TKT-000001",), "nothing to change"),
            (("--set", "status=open"), "which tickets?"),
            (("TKT-000001", "--set", "status=Gone"), "unknown status 'Gone'"),
            (("TKT-000001", "--set", "assignee=nobody@example.org"), "not an active agent"),
            (("TKT-000042", "--set", "status=open"), "no such ticket")):
        result = await run_cli(d.rt, "tickets", "bulk", *args)
        assert result.exit_code == 2 and why in result.output, (args, result.output)
    await run_cli(d.rt, "agents", "role", d.bob.email, "light")
    light = await run_cli(d.rt, "tickets", "bulk", "TKT-000001", "--as", d.bob.email,
                          "--set", "status=open")
    assert "your role (light) may not change tickets" in str(light.exception)


# -- the trash (item 3) -------------------------------------------------------------------


async def test_delete_hides_restore_brings_back_purge_removes(shaped: Desk) -> None:
    from tests.integration.test_portal import GENEROUS, _client, _token

    d = shaped
    await d.from_bob("#link TKT-000002\n", number=4)
    ticket = await d.ticket(2)
    # signed on the desk's clock, which the portal reads too
    signer = LinkSigner(d.rt.secrets, view_max_age=timedelta(days=30), clock=d.rt.clock)
    token = await _token(d.rt, Purpose.VIEW, ticket.id, ticket.requester_id, signer=signer)
    async with _client(create_app(d.rt, limits=GENEROUS)) as portal:
        before = await portal.get(f"/t/{token}")
        assert before.status_code == 200, before.text
    deleted = await run_cli(d.rt, "tickets", "delete", "TKT-000002", "TKT-000003")
    assert deleted.exit_code == 0 and "deleted 2 of 2 ticket(s)" in deleted.output
    assert "2" not in await numbers(d) and "3" not in await numbers(d)
    assert await numbers(d, "--deleted") == ["3", "2"]
    assert await found(d, "Problem 2") == []
    links = json.loads((await run_cli(d.rt, "tickets", "show", "TKT-000004",
                                      "--json")).output)["links"]
    assert links == []
    async with _client(create_app(d.rt, limits=GENEROUS)) as portal:
        assert (await portal.get(f"/t/{token}")).status_code == 410
    [audit] = await history(d, 2, "ticket.deleted")
    assert audit.actor.startswith("cli:")
    # mail on a deleted ticket's thread makes a new ticket, it does not revive the old
    await d.send(mail("Re: [TKT-000002] Problem 2", "Still broken.",
                      sender="Dan <dan@example.org>"))
    assert (await numbers(d))[0] == "7"

    restored = await run_cli(d.rt, "tickets", "restore", "TKT-000003")
    assert "restored 1 of 1" in restored.output and "3" in await numbers(d)

    too_young = await run_cli(d.rt, "tickets", "purge", "--older-than", "30d")
    assert "purged 0 ticket(s)" in too_young.output
    dry = await run_cli(d.rt, "tickets", "purge", "--older-than", "0d", "--dry-run")
    assert "TKT-000002" in dry.output and "would purge 1 ticket(s)" in dry.output
    spooled = len(await d.rows(InboundSpool))
    purged = await run_cli(d.rt, "tickets", "purge", "--older-than", "0d")
    assert purged.exit_code == 0 and "purged 1 ticket(s)" in purged.output
    assert await d.rows(Ticket, Ticket.number == 2) == []
    assert await d.rows(Message, Message.ticket_id == ticket.id) == []
    [gone] = await d.rows(AuditEvent, AuditEvent.action == "ticket.purged")
    assert gone.ticket_id is None and gone.before == {"ticket": "TKT-000002",
                                                      "subject": "Problem 2"}
    # the raw mail stays known (a resent copy is a duplicate, not the ticket again)
    assert len(await d.rows(InboundSpool)) == spooled
    assert all(r.ticket_id != ticket.id for r in await d.rows(InboundSpool))


async def test_a_light_agent_may_not_delete(shaped: Desk) -> None:
    await run_cli(shaped.rt, "agents", "role", shaped.bob.email, "light")
    refused = await run_cli(shaped.rt, "tickets", "delete", "--as", shaped.bob.email,
                            "TKT-000001")
    assert "lacks ticket.delete" in str(refused.exception)
