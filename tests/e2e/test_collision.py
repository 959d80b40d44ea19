"""Two agents answering the same message: the second reply is held, and the agent says
whether to send it (issue "The agent's desk by mail", item 7), through SMTP on SQLite and
PostgreSQL.

Each agent answers the notice the desk mailed them about the new ticket (its Message-ID
in In-Reply-To, to their own signed reply address), as a mail client does. The clock
moves a second per reading, so "after" means after.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpdesk.models import Agent, Message, OutboxRow
from tests.e2e.test_agent_commands import BOB, RELAY, Desk, _open_desk, mail

CAROL = "carol@support.example.com"


def ticking() -> Callable[[], datetime]:
    seconds = itertools.count()
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(seconds))


async def _desk(tmp_path: Path, db_url: str, mode: str) -> AsyncIterator[Desk]:
    async for d in _open_desk(tmp_path, db_url, clock=ticking(),
                              trusted_authserv_ids=[RELAY], trusted_relay_hosts=["127.0.0.1"],
                              collision=mode):
        yield d


@pytest.fixture
async def desk(tmp_path: Path, db_url: str) -> AsyncIterator[Desk]:
    async for d in _desk(tmp_path, db_url, "hold"):
        yield d


async def notice(d: Desk, agent: Agent, template: str = "agent_new_ticket") -> OutboxRow:
    rows = await d.rows(OutboxRow, OutboxRow.to_addr == agent.email,
                        OutboxRow.template == template)
    return sorted(rows, key=lambda r: r.id)[-1]


async def answer(d: Desk, agent: Agent, about: OutboxRow, body: str) -> None:
    """``agent`` answers the mail ``about`` from their mail client."""
    to = d.signed(1, agent)
    msg = mail("Re: [TKT-000001] Printer on fire", body,
               sender=f"{agent.name} <{agent.email}>", to=to, In_Reply_To=about.message_id)
    await d.send(msg, [to])


async def replies_to_requester(d: Desk) -> list[str]:
    rows = await d.rows(OutboxRow, OutboxRow.kind == "reply",
                        OutboxRow.to_addr == "alice@example.org")
    texts = []
    for row in sorted(rows, key=lambda r: r.id):
        [message] = await d.rows(Message, Message.id == row.about_message_id)
        texts.append(message.text)
    return texts


async def test_the_second_reply_is_held_and_send_sends_it(desk: Desk) -> None:
    d = desk
    bobs, carols = await notice(d, d.bob), await notice(d, d.carol)
    await answer(d, d.carol, carols, "Carol here: try turning it off.")
    await answer(d, d.bob, bobs, "Bob here: unplug it now.")
    assert await replies_to_requester(d) == ["Carol here: try turning it off."]
    [draft] = await d.rows(Message, Message.kind == "draft")
    assert (draft.text, draft.author_agent_id) == ("Bob here: unplug it now.", d.bob.id)
    held = await notice(d, d.bob, "agent_collision")
    assert held.context["held"] and held.context["other"]["email"] == CAROL
    assert held.context["other"]["text"] == "Carol here: try turning it off."
    shown = (await d.rows(OutboxRow, OutboxRow.id == held.id))[0]
    assert shown.to_addr == BOB

    await answer(d, d.bob, held, "#send\n")
    assert await replies_to_requester(d) == ["Carol here: try turning it off.",
                                             "Bob here: unplug it now."]
    assert await d.rows(Message, Message.kind == "draft") == []
    again = await d.rows(OutboxRow, OutboxRow.kind == "agent_error")
    assert again == []


async def test_discard_drops_the_held_reply_and_keeps_its_text(desk: Desk) -> None:
    d = desk
    bobs, carols = await notice(d, d.bob), await notice(d, d.carol)
    await answer(d, d.carol, carols, "Carol's answer.")
    await answer(d, d.bob, bobs, "Bob's answer.")
    held = await notice(d, d.bob, "agent_collision")
    await answer(d, d.bob, held, "#discard\n")
    assert await replies_to_requester(d) == ["Carol's answer."]
    [kept] = await d.rows(Message, Message.text == "Bob's answer.")
    assert kept.kind == "internal"
    await answer(d, d.bob, held, "#send\n")  # nothing left to send: said so
    [error] = [e for row in await d.rows(OutboxRow, OutboxRow.kind == "agent_error")
               for e in row.context["errors"]]
    assert "no held reply" in error["reason"]


async def test_a_reply_to_the_latest_mail_is_not_held(desk: Desk) -> None:
    d = desk
    carols = await notice(d, d.carol)
    await answer(d, d.carol, carols, "Carol's answer.")
    await d.send(mail("Re: [TKT-000001] Printer on fire", "Thanks, still smoking."))
    latest = await notice(d, d.bob, "agent_reply_notice")  # Alice's answer, told to Bob
    await answer(d, d.bob, latest, "Bob: call the fire brigade.")
    assert await replies_to_requester(d) == ["Carol's answer.", "Bob: call the fire brigade."]
    assert await d.rows(OutboxRow, OutboxRow.template == "agent_collision") == []


@pytest.mark.parametrize("mode", ["warn", "off"])
async def test_warn_sends_and_tells_and_off_just_sends(tmp_path: Path, db_url: str,
                                                       mode: str) -> None:
    async for d in _desk(tmp_path, db_url, mode):
        bobs, carols = await notice(d, d.bob), await notice(d, d.carol)
        await answer(d, d.carol, carols, "Carol's answer.")
        await answer(d, d.bob, bobs, "Bob's answer.")
        assert await replies_to_requester(d) == ["Carol's answer.", "Bob's answer."]
        told = await d.rows(OutboxRow, OutboxRow.template == "agent_collision")
        assert len(told) == (1 if mode == "warn" else 0)
        if told:
            assert told[0].context["held"] is False
