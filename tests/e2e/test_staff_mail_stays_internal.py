"""Hostile or misdirected mail around agents: what requesters must never see, through SMTP.

Issue 19: forged Authentication-Results (item 5), answers to staff-only notices and
unverified agent mail (item 6), internal Message-IDs in public References (item 6), agent
reply addresses bound to their ticket (item 7), acknowledgement loops through rotating
addresses and mail from our own address (item 9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.config import SlaPolicySettings, SlaSettings
from helpdesk.mailtokens import make_reply_address, parse_message_id, parse_reply_address
from helpdesk.models import (
    InboundSpool,
    Message,
    MessageRef,
    OutboxRow,
    Ticket,
)
from mailgate.service import make_gateway
from responders.actors import load_read_model
from responders.compose import Composer, OutgoingRow
from sla_daemon.engine import tick
from tests.e2e.test_agent_commands import BOB, RELAY, SUPPORT, Desk, _ar, _open_desk, mail

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday
ADMIN = "admin@support.example.com"
POLICY = SlaPolicySettings(name="fast", default=True, always=True,
                           first_response_minutes={"normal": 60},
                           resolution_minutes={"normal": 600})


async def _desk(tmp_path: Path, db_url: str, outbound: dict[str, Any] | None = None,
                **commands: Any) -> AsyncIterator[Desk]:
    """The agent-command desk, with an admin address, one SLA policy, and ``outbound``."""
    async for d in _open_desk(
            tmp_path, db_url,
            sections={"instance": {"admin_email": ADMIN}, "outbound": outbound or {}},
            adjust=lambda s: dataclasses.replace(s, sla=SlaSettings(policies=(POLICY,))),
            **commands):
        yield d


@pytest.fixture
async def desk(tmp_path: Path, db_url: str) -> AsyncIterator[Desk]:
    async for d in _desk(tmp_path, db_url, trusted_authserv_ids=[RELAY]):
        yield d


async def composed(desk: Desk, row: OutboxRow) -> EmailMessage:
    """The mail a worker would send for ``row``."""
    composer = Composer.from_settings(desk.rt.settings, desk.rt.clock)
    async with desk.rt.sessions() as session:
        fresh = await session.get(OutboxRow, row.id)
        assert fresh is not None
        read = await load_read_model(desk.rt, session, fresh)
        return composer.compose(OutgoingRow.from_row(fresh), read, now=T0)


async def requester_mail(desk: Desk) -> list[OutboxRow]:
    return await desk.rows(OutboxRow, OutboxRow.recipients.is_not(None),
                           OutboxRow.kind.in_(["reply", "resolved"]))


# -- item 5: Authentication-Results only from the relay that wrote them -------------------------

async def test_trusted_results_from_a_client_that_is_not_the_relay_are_ignored(
        tmp_path: Path, db_url: str) -> None:
    # The relay's authserv-id is trusted, but this SMTP client is not the relay: the
    # header is the sender's own claim.
    async for d in _desk(tmp_path, db_url, trusted_authserv_ids=[RELAY],
                         trusted_relay_hosts=["192.0.2.25"]):
        forged = _ar(RELAY, "dkim=pass header.d=support.example.com")
        await d.from_bob("#priority urgent\n#close\n", signed=False,
                         Authentication_Results=forged)
        ticket = await d.ticket()
        assert (ticket.priority, ticket.status) == ("normal", "Open")
        [notice] = await d.rows(OutboxRow, OutboxRow.kind == "agent_auth_refused")
        assert "did not come through the trusted relay" in notice.context["reason"]


async def test_trusted_results_count_on_mail_the_mta_hands_over(tmp_path: Path,
                                                                 db_url: str) -> None:
    # The pipe (and LMTP, IMAP) only ever gets mail through the MTA that wrote the results.
    async for d in _desk(tmp_path, db_url, trusted_authserv_ids=[RELAY]):
        msg = mail("Re: [TKT-000001] Printer on fire", "#priority high\n", sender=BOB,
                   Authentication_Results=_ar(RELAY, "dkim=pass header.d=support.example.com"))
        result = await make_gateway(d.rt).ingest(msg.as_bytes(), "pipe", recipients=[SUPPORT])
        assert result.disposition == "reply"
        assert (await d.ticket()).priority == "high"


# -- item 6: staff-only notices, unverified agent mail, public References -----------------------

async def _breach(desk: Desk) -> OutboxRow:
    await tick(desk.rt, at=T0 + timedelta(hours=2))
    [row] = await desk.rows(OutboxRow, OutboxRow.kind == "sla_breach")
    return row


async def test_an_sla_alert_carries_no_requester_facing_reply_address(desk: Desk) -> None:
    row = await _breach(desk)
    sent = await composed(desk, row)
    reply_to = str(sent["Reply-To"])
    token = parse_reply_address(reply_to, secrets=["test-secret"])
    assert token is not None and token.internal and token.ticket == 1
    assert reply_to != make_reply_address(SUPPORT, 1, secret="test-secret")
    mid = parse_message_id(str(sent["Message-ID"]), instance_id=desk.rt.settings.instance.id,
                           secrets=["test-secret"])
    assert mid is not None and mid.internal


@pytest.mark.parametrize("how", ["reply-to", "in-reply-to"])
async def test_an_admins_answer_to_an_sla_alert_is_an_internal_note(desk: Desk,
                                                                     how: str) -> None:
    row = await _breach(desk)
    sent = await composed(desk, row)
    to = str(sent["Reply-To"]) if how == "reply-to" else SUPPORT
    answer = mail("Re: " + str(sent["Subject"]), "Who is on this? Call the customer.\n",
                  sender=f"Admin <{ADMIN}>", to=to, In_Reply_To=str(sent["Message-ID"]))
    await desk.send(answer, [to])
    ticket = await desk.ticket()
    [note] = await desk.rows(Message, Message.ticket_id == ticket.id,
                             Message.text.contains("Who is on this"))
    assert note.kind == "internal"
    assert ticket.first_response_at is None
    assert await requester_mail(desk) == []


async def test_the_assignees_answer_to_an_sla_alert_runs_commands_as_a_note(desk: Desk) -> None:
    await desk.from_bob("#assign me\n")
    row = await _breach(desk)
    sent = await composed(desk, row)
    reply_to = str(sent["Reply-To"])
    token = parse_reply_address(reply_to, secrets=["test-secret"])
    assert token is not None and token.internal and token.agent_id == desk.bob.id
    answer = mail("Re: " + str(sent["Subject"]), "#priority high\nCalling them now.\n",
                  sender=BOB, to=reply_to, In_Reply_To=str(sent["Message-ID"]))
    await desk.send(answer, [reply_to])
    ticket = await desk.ticket()
    assert ticket.priority == "high"
    [note] = await desk.rows(Message, Message.text.contains("Calling them now"))
    assert note.kind == "internal" and note.author_agent_id == desk.bob.id
    assert await requester_mail(desk) == []


async def test_unverified_mail_from_an_agents_address_is_an_internal_note(desk: Desk) -> None:
    # Someone writes as Bob onto the requesters' thread: not shown to the requester, no
    # command runs, Bob is told.
    plain = make_reply_address(SUPPORT, 1, secret="test-secret")
    await desk.send(mail("Re: [TKT-000001] x", "#close\nRefund approved, 100%.\n",
                         sender=BOB, to=plain), [plain])
    ticket = await desk.ticket()
    assert ticket.status == "Open" and ticket.first_response_at is None
    [note] = await desk.rows(Message, Message.text.contains("Refund approved"))
    assert note.kind == "internal" and note.author_agent_id is None
    assert note.text.startswith("Unverified mail from " + BOB)
    assert await requester_mail(desk) == []
    assert await desk.count(OutboxRow, OutboxRow.kind == "agent_auth_refused") == 1


async def test_public_replies_reference_only_the_public_thread(desk: Desk) -> None:
    [alice_mail] = await desk.rows(Message, Message.kind == "public")
    [ack] = await desk.rows(OutboxRow, OutboxRow.kind == "ack")
    notices = await desk.rows(OutboxRow, OutboxRow.kind == "agent_notice")
    assert notices, "agents were told of the new ticket"
    bob_says = mail("Re: [TKT-000001] Printer on fire", "Unplug it.\n", sender=BOB,
                    to=desk.signed(1), In_Reply_To=notices[0].message_id)
    await desk.send(bob_says, [desk.signed(1)])
    [relay] = await desk.rows(OutboxRow, OutboxRow.kind == "reply")
    refs = set(relay.references) | {relay.in_reply_to}
    assert refs == {alice_mail.message_id, ack.message_id}
    internal = {n.message_id for n in notices} | {str(bob_says["Message-ID"])}
    assert not internal & set((await composed(desk, relay)).get("References", "").split())
    # every id we left out still threads a reply (it is recorded for the ticket)
    known = {r.message_id for r in await desk.rows(MessageRef)}
    assert internal <= known


# -- item 7: an agent's signed address acts on its own ticket -----------------------------------

async def test_an_agents_signed_address_binds_commands_to_its_ticket(desk: Desk) -> None:
    await desk.send(mail("Toner empty", sender="Dave <dave@example.net>"))  # TKT-000002
    [notice2] = await desk.rows(OutboxRow, OutboxRow.kind == "agent_notice",
                                OutboxRow.ticket_id == (await desk.ticket(2)).id,
                                OutboxRow.to_addr == BOB)
    # Bob answers to his address for ticket 1, with In-Reply-To naming ticket 2
    to = desk.signed(1)
    await desk.send(mail("Re: [TKT-000002] Toner empty", "#priority urgent\n", sender=BOB,
                         to=to, In_Reply_To=notice2.message_id, References=notice2.message_id),
                    [to])
    assert (await desk.ticket(1)).priority == "urgent"
    assert (await desk.ticket(2)).priority == "normal"


# -- item 9: loops ------------------------------------------------------------------------------

async def test_rotating_plus_addresses_share_one_acknowledgement_limit(desk: Desk) -> None:
    for i in range(6):
        await desk.send(mail(f"Out of office {i}", sender=f"loop+{i}@example.com"))
    for variant in ("j.o.e@gmail.com", "jo.e+1@googlemail.com", "JOE+2@gmail.com",
                    "joe+3@gmail.com"):
        await desk.send(mail(f"Hello from {variant}", sender=variant))
    acks = [r.recipients[0] for r in await desk.rows(OutboxRow, OutboxRow.kind == "ack")]
    assert len([a for a in acks if a.endswith("@example.com")]) == 3
    assert len([a for a in acks if a.endswith(("@gmail.com", "@googlemail.com"))]) == 3
    assert await desk.count(Ticket) == 1 + 6 + 4  # every mail is still a ticket


async def test_rotating_local_parts_of_one_domain_hit_the_domain_limit(tmp_path: Path,
                                                                       db_url: str) -> None:
    async for d in _desk(tmp_path, db_url, outbound={"ack_limit_per_domain_per_hour": 4}):
        for i in range(6):
            await d.send(mail(f"Auto {i}", sender=f"u{i}@catchall.example"))
        acks = await d.rows(OutboxRow, OutboxRow.kind == "ack",
                            OutboxRow.to_domain == "catchall.example")
        assert len(acks) == 4


async def test_mail_from_our_own_address_is_not_a_customers(desk: Desk) -> None:
    # A copy of our own mail that lost its X-Helpdesk-Loop on the way back, or someone
    # writing as us: no ticket, no acknowledgement.
    await desk.send(mail("Your request", "We got it.\n",
                         sender=f"Support <{SUPPORT.replace('@', '+t9@')}>"))
    assert await desk.count(Ticket) == 1
    async with desk.rt.sessions() as session:
        last = (await session.execute(
            select(InboundSpool).order_by(InboundSpool.id.desc()).limit(1))).scalar_one()
    assert last.status == "ignored" and "our own address" in last.reason
