"""The real portal (uvicorn on a socket) against hostile clients, on SQLite and PostgreSQL.

Overflowing numbers in tokens and forms, clients that hang up mid-request, links withdrawn
with ``tickets revoke-links`` and the magic-link form's timing: each through HTTP, the
way an attacker reaches the portal.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import structlog
from click.testing import CliRunner
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select, text

from helpdesk.audit import Actor
from helpdesk.cli_portal import revoke_links
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.links import SALTS, LinkSigner, Purpose, _secret_digest
from helpdesk.models import Message, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import NewAttachment, TicketService
from portal_lite.security import CSRF_COOKIE, MY_SCOPE, CsrfGuard, token_scope

AGENT = Actor("agent", "bob@support.example.com")
HUGE = 2222222222222222222222
PG_INT4_OVERFLOW = 2**31
COOKIE = "c" * 32


@dataclass
class Live:
    """A portal serving on 127.0.0.1:port, and the log events it wrote."""

    rt: Runtime
    port: int
    events: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Seeded:
    ticket_id: int
    newer_id: int
    contact_id: int
    attachment_id: int


@pytest.fixture
async def live(runtime: Runtime) -> AsyncIterator[Live]:
    """``portal_lite.service.serve`` on a port-0 socket in this loop, logs captured."""
    from portal_lite.service import serve

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as events:
        task = asyncio.create_task(serve(runtime, stop, sock=sock))
        try:
            live = Live(runtime, sock.getsockname()[1], events)
            await _wait_until_serving(live, task)
            yield live
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20)
            sock.close()


async def _wait_until_serving(live: Live, task: asyncio.Task[None]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if task.done():
                task.result()
            try:
                if (await client.get(f"{live.url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    pytest.fail("the portal did not answer on its socket within 10 s")


@pytest.fixture
async def seeded(runtime: Runtime) -> Seeded:
    """Alice (owner of example.org) with two tickets; the older one has a public file."""
    async with runtime.sessions() as session, session.begin():
        svc = TicketService(session, runtime.settings, clock=runtime.clock)
        agent = await add_agent(session, "bob@support.example.com", "Bob")
        alice = await get_or_create_contact(session, "alice@example.org", "Alice")
        alice.role = "owner"
        first, _ = await svc.open_ticket(requester=alice, subject="Printer on fire",
                                         text="It burns.", actor=Actor("contact", alice.email))
        sha = runtime.store.put(b"%PDF-1.4 manual")
        public = await svc.add_message(
            first, kind="public", text="Try the manual.", actor=AGENT, author_agent=agent,
            attachments=[NewAttachment("manual.pdf", "application/pdf", 15, sha)])
        await svc.set_status(first, "Resolved", AGENT)
        newer, _ = await svc.open_ticket(requester=alice, subject="Scanner jammed",
                                         text="Paper everywhere.",
                                         actor=Actor("contact", alice.email))
        return Seeded(first.id, newer.id, alice.id, public.attachments[0].id)


def _client(live: Live) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=live.url, cookies={CSRF_COOKIE: COOKIE}, timeout=10)


def _csrf(rt: Runtime, scope: str) -> str:
    return CsrfGuard(rt.secrets).form_token(COOKIE, scope)


def _real_key_token(rt: Runtime, purpose: Purpose, payload: Any, *,
                    timestamp: int | None = None) -> str:
    """A token signed with the portal's own key, whatever its payload or timestamp."""

    class Stamped(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) if timestamp is None else timestamp

    serializer = URLSafeTimedSerializer(list(rt.secrets), salt=SALTS[purpose], signer=Stamped,
                                        signer_kwargs={"digest_method": hashlib.sha256})
    return serializer.dumps(payload)


def _unsigned_token(payload: Any) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode() if not isinstance(
        payload, bytes) else payload
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") + ".AAAAAA.c2lnbmF0dXJl"


async def _secret(rt: Runtime, ticket_id: int) -> str:
    async with rt.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket.link_secret


async def _hostile_tokens(rt: Runtime, seeded: Seeded, purpose: Purpose) -> list[str]:
    """Overflowing ids in every position, signed with our key and not, and a huge stamp."""
    tid, cid = seeded.ticket_id, seeded.contact_id
    digest = _secret_digest(tid, await _secret(rt, tid))
    attachment = {"attachment": seeded.attachment_id}
    payloads: list[Any] = [
        [HUGE], [HUGE, cid, digest], [tid, HUGE, digest], [-HUGE, cid, digest],
        [PG_INT4_OVERFLOW, cid, digest], [tid, PG_INT4_OVERFLOW, digest],
    ]
    if purpose is Purpose.DOWNLOAD:  # other purposes ignore the extra claims
        payloads += [[tid, cid, digest, {"attachment": value}]
                     for value in (HUGE, PG_INT4_OVERFLOW, -HUGE, [1], "1")]
    tokens = [_real_key_token(rt, purpose, p) for p in payloads]
    tokens += [_unsigned_token(p) for p in payloads]
    tokens.append(_real_key_token(rt, purpose, [tid, cid, digest, attachment],
                                  timestamp=2**64 - 1))
    tokens.append(_unsigned_token(b"[" * 1500 + b"]" * 1500))
    tokens.append(_unsigned_token(b"[" + b"9" * 5000 + b"]"))
    return tokens


def _assert_no_error_logged(live: Live, caplog: pytest.LogCaptureFixture | None = None) -> None:
    bad = [e for e in live.events
           if e.get("log_level") in ("error", "critical") or "exc_info" in e]
    assert bad == [], bad
    if caplog is not None:
        records = [r for r in caplog.records
                   if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]
        assert records == [], [r.getMessage() for r in records]
        assert "Traceback" not in caplog.text


async def _magic_links(rt: Runtime) -> list[OutboxRow]:
    async with rt.sessions() as session:
        return list((await session.execute(select(OutboxRow).where(
            OutboxRow.kind == "magic_link").order_by(OutboxRow.id))).scalars())


async def _wait_for_magic_link(rt: Runtime, *, exclude: set[int],
                               timeout: float = 15.0) -> OutboxRow:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [row for row in await _magic_links(rt) if row.id not in exclude]
        if fresh:
            [row] = fresh
            return row
        await asyncio.sleep(0.05)
    pytest.fail(f"no magic-link mail in the outbox within {timeout} s")


# -- numbers that overflow ----------------------------------------------------------------------

async def test_overflowing_numbers_in_tokens_answer_4xx_on_every_route(
        live: Live, seeded: Seeded) -> None:
    routes: list[tuple[str, str, Purpose, dict[str, str]]] = [
        ("GET", "/t/{}", Purpose.VIEW, {}),
        ("POST", "/t/{}", Purpose.VIEW, {"text": "hi"}),
        ("GET", "/csat/{}", Purpose.RATE, {}),
        ("POST", "/csat/{}", Purpose.RATE, {"score": "5"}),
        ("GET", "/d/{}", Purpose.DOWNLOAD, {}),
        ("GET", "/my/{}", Purpose.MY_TICKETS, {}),
        ("POST", "/my/{}/reopen", Purpose.MY_TICKETS, {"ticket": str(seeded.ticket_id)}),
        ("POST", "/my/{}/watchers", Purpose.MY_TICKETS,
         {"ticket": str(seeded.ticket_id), "email": "x@example.org", "action": "add"}),
    ]
    async with _client(live) as client:
        for method, pattern, purpose, form in routes:
            for token in await _hostile_tokens(live.rt, seeded, purpose):
                path = pattern.format(token)
                data = {**form, "csrf": _csrf(live.rt, token_scope(token)), "website": ""}
                response = await (client.get(path) if method == "GET"
                                  else client.post(path, data=data))
                assert 400 <= response.status_code < 500, (method, path[:80],
                                                           response.status_code)
                assert "Traceback" not in response.text
    _assert_no_error_logged(live)


async def _my_tickets_path(live: Live, client: httpx.AsyncClient, email: str) -> str:
    """Ask for a magic link through the form and return the path it mails."""
    before = {row.id for row in await _magic_links(live.rt)}
    response = await client.post("/my", data={"email": email, "website": "",
                                              "csrf": _csrf(live.rt, MY_SCOPE)})
    assert response.status_code == 200
    row = await _wait_for_magic_link(live.rt, exclude=before)
    return "/" + str(row.context["url"]).split("/", 3)[3]


async def test_out_of_range_ids_and_numbers_in_forms_answer_4xx(
        live: Live, seeded: Seeded) -> None:
    async with _client(live) as client:
        my = await _my_tickets_path(live, client, "alice@example.org")
        csrf = _csrf(live.rt, token_scope(my.rsplit("/", 1)[1]))
        for bad in ("99999999999999999999", str(PG_INT4_OVERFLOW), "\u00b2", "9" * 5000,
                    "-1", "0", " 1", "\u0661", ""):
            for action, extra in (("reopen", {}),
                                  ("watchers", {"email": "erin@example.org", "action": "add"})):
                response = await client.post(f"{my}/{action}",
                                             data={"ticket": bad, "csrf": csrf, **extra})
                assert 400 <= response.status_code < 500, (action, bad[:20],
                                                           response.status_code)
        signer = LinkSigner(live.rt.secrets, view_max_age=timedelta(days=1))
        rate = signer.sign(Purpose.RATE, seeded.ticket_id, seeded.contact_id,
                           await _secret(live.rt, seeded.ticket_id))
        for bad in ("\u00b2", "9" * 5000, "99999999999999999999"):
            page = await client.get(f"/csat/{rate}", params={"score": bad})
            assert page.status_code == 200, bad[:20]
            posted = await client.post(f"/csat/{rate}", data={
                "score": bad, "csrf": _csrf(live.rt, token_scope(rate))})
            assert posted.status_code == 400, bad[:20]
    _assert_no_error_logged(live)


async def test_nul_in_form_text_is_dropped_and_in_an_address_refused(
        live: Live, seeded: Seeded) -> None:
    secret = await _secret(live.rt, seeded.ticket_id)
    signer = LinkSigner(live.rt.secrets, view_max_age=timedelta(days=1))
    view = signer.sign(Purpose.VIEW, seeded.ticket_id, seeded.contact_id, secret)
    rate = signer.sign(Purpose.RATE, seeded.ticket_id, seeded.contact_id, secret)
    async with _client(live) as client:
        my = await _my_tickets_path(live, client, "alice@example.org")
        reply = await client.post(f"/t/{view}", data={
            "text": "half\x00way there", "csrf": _csrf(live.rt, token_scope(view))})
        upload = await client.post(
            f"/t/{view}", data={"text": "nul\x00file", "csrf": _csrf(live.rt, token_scope(view))},
            files={"attachments": ("a\x00b.txt", b"data", "text/plain")})
        rating = await client.post(f"/csat/{rate}", data={
            "score": "4", "comment": "ok\x00", "csrf": _csrf(live.rt, token_scope(rate))})
        assert (reply.status_code, upload.status_code, rating.status_code) == (303, 303, 303)
        for address in ("alice@example.org\x00", "a\x00b@example.org", "a\x01@example.org",
                        "\x85@example.org"):
            asked = await client.post("/my", data={"email": address,
                                                   "csrf": _csrf(live.rt, MY_SCOPE)})
            watcher = await client.post(f"{my}/watchers", data={
                "ticket": str(seeded.ticket_id), "email": address, "action": "add",
                "csrf": _csrf(live.rt, token_scope(my.rsplit("/", 1)[1]))})
            assert (asked.status_code, watcher.status_code) == (400, 400), address
    async with live.rt.sessions() as session:
        texts = (await session.execute(select(Message.text).where(
            Message.ticket_id == seeded.ticket_id).order_by(Message.id))).scalars().all()
    assert texts[-2:] == ["halfway there", "nulfile"]
    _assert_no_error_logged(live)


# -- clients that hang up -------------------------------------------------------------------------

def _hang_up(port: int, data: bytes) -> None:
    """Send ``data`` on a fresh connection and close it without reading an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)


async def test_client_hanging_up_mid_request_leaves_no_traceback_in_the_log(
        live: Live, seeded: Seeded, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = await _secret(live.rt, seeded.ticket_id)
    signer = LinkSigner(live.rt.secrets, view_max_age=timedelta(days=1))
    view = signer.sign(Purpose.VIEW, seeded.ticket_id, seeded.contact_id, secret)
    rate = signer.sign(Purpose.RATE, seeded.ticket_id, seeded.contact_id, secret)
    my = signer.sign(Purpose.MY_TICKETS, seeded.ticket_id, seeded.contact_id, secret)
    form = "application/x-www-form-urlencoded"
    multipart = "multipart/form-data; boundary=XyZ"
    partial_bodies = [
        ("/my", form, b"email=alice%40exa"),
        (f"/t/{view}", multipart,
         b'--XyZ\r\nContent-Disposition: form-data; name="text"\r\n\r\nhal'),
        (f"/csat/{rate}", form, b"score=4&comm"),
        (f"/my/{my}/reopen", form, b"ticket=1"),
        (f"/my/{my}/watchers", form, b"ticket=1&em"),
    ]
    for path, kind, body in partial_bodies:
        head = (f"POST {path} HTTP/1.1\r\nHost: portal\r\nContent-Type: {kind}\r\n"
                f"Cookie: {CSRF_COOKIE}={COOKIE}\r\nContent-Length: 4000\r\n\r\n")
        await asyncio.to_thread(_hang_up, live.port, head.encode() + body)
    for data in (b"GET /t/", b"GET /healthz HTTP/1.1\r\nHost: por",
                 f"GET /t/{view} HTTP/1.1\r\nHost: portal\r\n\r\n".encode(),
                 f"GET /my/{my} HTTP/1.1\r\nHost: portal\r\n\r\n".encode()):
        await asyncio.to_thread(_hang_up, live.port, data)
    for _ in range(200):
        gone = [e for e in live.events if e.get("event") == "portal.client_gone"]
        errors = [e for e in live.events if e.get("log_level") in ("error", "critical")]
        if len(gone) >= len(partial_bodies) or errors:
            break
        await asyncio.sleep(0.05)
    async with _client(live) as client:
        assert (await client.get(f"/t/{view}")).status_code == 200
    await asyncio.sleep(0.2)
    _assert_no_error_logged(live, caplog)
    assert len(gone) == len(partial_bodies), live.events


# -- revoked links and the my-tickets list --------------------------------------------------------

async def test_revoke_links_also_stops_my_tickets_links_opening_the_ticket(
        live: Live, seeded: Seeded) -> None:
    async with _client(live) as client:
        my = await _my_tickets_path(live, client, "alice@example.org")
        listed = await client.get(my)
        assert listed.status_code == 200 and "Printer on fire" in listed.text
        result = await asyncio.to_thread(
            CliRunner().invoke, revoke_links,
            ["--config", live.rt.settings.source, f"TKT-{seeded.ticket_id:06d}"])
        assert result.exit_code == 0, result.output

        after = await client.get(my)
        assert after.status_code == 200
        assert "Scanner jammed" in after.text
        assert "Printer on fire" not in after.text and "withdrawn" in after.text
        for link in _view_links(after.text):
            page = await client.get(link)
            assert page.status_code == 200 and "Printer on fire" not in page.text
        csrf = _csrf(live.rt, token_scope(my.rsplit("/", 1)[1]))
        reopen = await client.post(f"{my}/reopen", data={
            "ticket": str(seeded.ticket_id), "csrf": csrf})
        assert reopen.status_code == 410
        watchers = await client.post(f"{my}/watchers", data={
            "ticket": str(seeded.ticket_id), "csrf": csrf, "email": "erin@example.org",
            "action": "add"})
        assert watchers.status_code == 410
        async with live.rt.sessions() as session:
            ticket = await session.get(Ticket, seeded.ticket_id)
            assert ticket is not None and ticket.status == "Resolved"

        fresh = await _my_tickets_path(live, client, "alice@example.org")
        renewed = await client.get(fresh)
        assert "Printer on fire" in renewed.text and "withdrawn" not in renewed.text
        opened = [await client.get(link) for link in _view_links(renewed.text)]
        assert any("Printer on fire" in page.text for page in opened)


def _view_links(page: str) -> list[str]:
    return re.findall(r'href="(/t/[^"]+)"', page)


# -- the magic-link form's timing -----------------------------------------------------------------

class _WriteBlocker:
    """Holds the database (SQLite) or the outbox table (PostgreSQL) locked from another
    connection, so the magic-link lookup and outbox write wait until it lets go."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._conn: Any = None

    async def __aenter__(self) -> _WriteBlocker:
        url = self.rt.settings.database.url
        if url.startswith("sqlite"):
            self._conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("BEGIN EXCLUSIVE")
        else:
            self._conn = await self.rt.engine.connect()
            await self._conn.begin()
            await self._conn.execute(text("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if isinstance(self._conn, sqlite3.Connection):
            self._conn.execute("ROLLBACK")
            self._conn.close()
        else:
            await self._conn.rollback()
            await self._conn.close()


async def test_magic_link_form_answers_before_any_lookup_and_mails_the_known_address(
        live: Live, seeded: Seeded) -> None:
    async with _client(live) as client:
        pages = []
        async with _WriteBlocker(live.rt):
            for email in ("alice@example.org", "nobody@example.org"):
                started = time.monotonic()
                response = await client.post("/my", timeout=5, data={
                    "email": email, "website": "", "csrf": _csrf(live.rt, MY_SCOPE)})
                assert response.status_code == 200, response.text
                assert time.monotonic() - started < 2.0
                pages.append(response.text)
        assert pages[0] == pages[1]
        assert "Please check your mail" in pages[0]
        row = await _wait_for_magic_link(live.rt, exclude=set())
    assert row.recipients == ["alice@example.org"]
    _assert_no_error_logged(live)
