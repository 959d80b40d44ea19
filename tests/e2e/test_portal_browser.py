"""A requester in real headless Chromium: mailed link -> ticket page -> reply with a file -> rating.

The portal (uvicorn, ``portal_lite.service.serve``) and the worker role
(``responders.service.serve``: outbox relay + Dramatiq, sending over real SMTP) run together
in one event loop in a background thread, as in ``helpdesk run``. The links the browser
opens come from the acknowledgement and resolution mails the SMTP sink captured.
Screenshots of the ticket and rating pages go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from helpdesk.audit import Actor
from helpdesk.config import Settings
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.models import CsatRating, Message, Ticket
from helpdesk.notify import Notifier, acknowledge
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from tests.conftest import make_settings, sqlite_url
from tests.fixtures.browser import browser, browser_page, save_screenshot  # noqa: F401
from tests.fixtures.smtp_sink import ReceivedMessage, SmtpSink, smtp_sink  # noqa: F401

pytestmark = pytest.mark.browser
T = TypeVar("T")
AGENT = Actor("agent", "bob@support.example.com")
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


class LiveDaemon:
    """Portal + worker roles on one loop in a thread; ``call`` runs a coroutine there."""

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rt: Runtime | None = None
        self._ready: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="live-daemon", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.result(timeout=30)

    def call(self, work: Callable[[Runtime], Awaitable[T]], timeout: float = 30) -> T:
        assert self.loop is not None and self.rt is not None
        return asyncio.run_coroutine_threadsafe(work(self.rt), self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=90)
        assert not self._thread.is_alive(), "the live daemon did not stop"

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    async def _serve(self) -> None:
        from portal_lite.service import serve as serve_portal
        from responders.broker import WorkerOptions
        from responders.service import run as run_worker

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.rt = await Runtime.open(self.settings)
        options = WorkerOptions(poll_interval=0.2, threads=2)
        tasks = [asyncio.create_task(serve_portal(self.rt, self._stop, sock=self.sock)),
                 asyncio.create_task(run_worker(self.rt, self._stop, options))]
        try:
            await _wait_for_port(self.sock.getsockname()[1])
            self._ready.set_result(None)
            await asyncio.gather(*tasks)
        finally:
            self._stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.rt.close()


async def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"portal did not listen on port {port} in {timeout}s") \
                    from None
            await asyncio.sleep(0.05)


@pytest.fixture
def live(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[LiveDaemon]:  # noqa: F811
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = make_settings(
        tmp_path, sqlite_url(tmp_path),
        portal={"base_url": f"http://127.0.0.1:{port}", "product_name": "Acme Support"},
        outbound={"host": smtp_sink.host, "port": smtp_sink.port},
    )
    daemon = LiveDaemon(settings, sock)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        sock.close()


def _body(received: ReceivedMessage) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None, "mail without a text part"
    return str(part.get_content())


def _link(received: ReceivedMessage, pattern: str) -> str:
    match = re.search(pattern, _body(received))
    assert match, f"no link matching {pattern!r} in:\n{_body(received)}"
    return match.group(0)


async def _open_ticket(rt: Runtime) -> int:
    async with rt.sessions() as session, session.begin():
        await add_agent(session, "bob@support.example.com", "Bob")
        alice = await get_or_create_contact(session, "alice@example.org", "Alice")
        svc = TicketService(session, rt.settings, clock=rt.clock, listeners=[Notifier(rt)])
        ticket, message = await svc.open_ticket(
            requester=alice, subject="Printer on fire", text="It burns since this morning.",
            actor=Actor("contact", alice.email))
        assert await acknowledge(rt, session, ticket, message)
        return ticket.id


async def _resolve(rt: Runtime, ticket_id: int) -> None:
    async with rt.sessions() as session, session.begin():
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        svc = TicketService(session, rt.settings, clock=rt.clock, listeners=[Notifier(rt)])
        await svc.set_status(ticket, "Resolved", AGENT)


def test_requester_replies_with_a_file_and_rates_four_stars_in_chromium(
        live: LiveDaemon, smtp_sink: SmtpSink, browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    ticket_id = live.call(_open_ticket)
    [ack] = smtp_sink.wait_for(
        lambda m: "alice@example.org" in m.rcpt_tos and "Printer on fire" in m.subject,
        timeout=20)
    view_url = _link(ack, r"http://127\.0\.0\.1:\d+/t/[A-Za-z0-9_.\-]+")

    page.goto(view_url)
    assert page.locator("h1").inner_text().startswith("TKT-000001")
    assert "It burns since this morning." in page.content()
    assert "Acme Support" in page.locator("header.site").inner_text()
    save_screenshot(page, "portal-ticket")

    page.fill("#text", "Here is a photo of the smoke.")
    page.set_input_files("#attachments", files=[
        {"name": "smoke.png", "mimeType": "image/png", "buffer": PNG}])
    page.click("button[type=submit]")
    page.wait_for_selector("text=your reply was added")
    assert page.locator("#latest .text").inner_text() == "Here is a photo of the smoke."
    assert page.locator("#latest .attachments a").inner_text() == "smoke.png"
    save_screenshot(page, "portal-ticket-replied")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "wider than a phone"
    save_screenshot(page, "portal-ticket-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    async def stored_reply(rt: Runtime) -> Message:
        async with rt.sessions() as session:
            return (await session.execute(select(Message).where(
                Message.ticket_id == ticket_id).order_by(Message.id.desc()).limit(1)
            )).unique().scalar_one()

    reply = live.call(stored_reply)
    assert (reply.via, reply.kind) == ("web", "public")
    assert [(a.filename, a.size) for a in reply.attachments] == [("smoke.png", len(PNG))]

    live.call(lambda rt: _resolve(rt, ticket_id))
    [resolved] = smtp_sink.wait_for(
        lambda m: "alice@example.org" in m.rcpt_tos and "/csat/" in _body(m), timeout=20)
    rate_url = _link(resolved, r"http://127\.0\.0\.1:\d+/csat/[A-Za-z0-9_.\-]+\?score=4")

    assert "one click" not in _body(resolved).lower()
    page.goto(rate_url)
    assert page.is_checked("#score-4")
    assert page.is_visible("text=You chose 4 of 5 in our mail")
    assert page.inner_text("button[type=submit]").strip() == "Confirm my rating"

    async def ratings(rt: Runtime) -> list[tuple[int, str]]:
        async with rt.sessions() as session:
            rows = (await session.execute(select(CsatRating))).scalars().all()
            return [(r.score, r.comment) for r in rows]

    assert live.call(ratings) == [], "opening the one-click link must not record a rating"
    page.fill("#comment", "Fast and friendly, thank you!")
    save_screenshot(page, "portal-rating")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Thank you for your rating")
    save_screenshot(page, "portal-rating-saved")
    assert live.call(ratings) == [(4, "Fast and friendly, thank you!")]
