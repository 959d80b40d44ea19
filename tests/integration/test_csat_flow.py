"""The rating path as a requester walks it: the resolved mail's words, then the real portal.

The resolution mail is composed from the shipped templates; its score link is opened on the
portal served by uvicorn over HTTP (the process role, on a port of its own). Opening the
link records nothing (mail scanners follow links); the page has the mailed score selected,
says so, and one button confirms it without a comment.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from helpdesk.audit import Actor
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.models import CsatRating, OutboxRow
from helpdesk.notify import Notifier
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from portal_lite.service import serve
from responders.actors import load_read_model
from responders.compose import Composer, OutgoingRow

AGENT = Actor("agent", "bob@support.example.com")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


async def _resolved_mail(rt: Runtime) -> tuple[str, str]:
    """Alice's ticket resolved by Bob; the text and HTML of the mail she gets."""
    async with rt.sessions() as session, session.begin():
        svc = TicketService(session, rt.settings, clock=rt.clock, listeners=[Notifier(rt)])
        await add_agent(session, "bob@support.example.com", "Bob")
        alice = await get_or_create_contact(session, "alice@example.org", "Alice")
        ticket, _ = await svc.open_ticket(requester=alice, subject="Printer on fire",
                                          text="It burns.", actor=Actor("contact", alice.email))
        await svc.set_status(ticket, "Resolved", AGENT)
    async with rt.sessions() as session:
        row = (await session.execute(
            select(OutboxRow).where(OutboxRow.kind == "resolved"))).scalar_one()
        read = await load_read_model(rt, session, row)
        mail = Composer.from_settings(rt.settings, rt.clock).compose(
            OutgoingRow.from_row(row), read, now=rt.clock())
    text, html = (mail.get_body(preferencelist=(kind,)) for kind in ("plain", "html"))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


@pytest.fixture
async def portal(runtime: Runtime) -> AsyncIterator[str]:
    """The portal role serving on a socket of its own; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(runtime, stop, sock=sock))
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    try:
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        sock.close()


async def _ratings(rt: Runtime) -> list[tuple[int, str]]:
    async with rt.sessions() as session:
        return [(r.score, r.comment) for r in (await session.execute(
            select(CsatRating))).scalars()]


async def test_the_mail_promises_what_the_page_does_and_one_button_confirms(
        runtime: Runtime, portal: str) -> None:
    text, html = await _resolved_mail(runtime)
    for body in (text, html):
        assert "one click" not in body.lower()
        assert "confirm it with one button" in body and "comment" in body
    [link] = re.findall(r"\S+/csat/\S+\?score=4\b", text)
    path = urlsplit(link).path + "?" + urlsplit(link).query

    async with httpx.AsyncClient(base_url=portal) as client:
        page = await client.get(path)
        assert page.status_code == 200
        assert await _ratings(runtime) == [], "opening the mailed link must record nothing"
        assert re.search(r'value="4"\s+checked', page.text)
        assert not re.search(r'value="[1235]"\s+checked', page.text)
        assert "You chose 4 of 5 in our mail" in page.text
        assert "a comment is optional" in page.text
        assert re.findall(r"<button[^>]*>([^<]*)</button>", page.text) == ["Confirm my rating"]
        [csrf] = CSRF_RE.findall(page.text)
        done = await client.post(urlsplit(link).path,
                                 data={"score": "4", "comment": "", "csrf": csrf, "website": ""})
        assert done.status_code == 303
        saved = await client.get(done.headers["location"])
    assert await _ratings(runtime) == [(4, "")]
    assert "Thank you for your rating" in saved.text and "Confirm my rating" not in saved.text
