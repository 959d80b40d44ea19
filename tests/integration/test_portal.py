"""The portal app against SQLite and PostgreSQL: pages, replies, ratings, my-tickets, refusals."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from helpdesk.audit import Actor
from helpdesk.cli_portal import revoke_links
from helpdesk.directory import add_agent, get_or_create_contact
from helpdesk.links import LinkSigner, Purpose
from helpdesk.models import AuditEvent, CsatRating, Message, OutboxRow, Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import NewAttachment, TicketService
from portal_lite.app import create_app
from portal_lite.security import CSRF_COOKIE, CsrfGuard, RateLimits, token_scope

AGENT = Actor("agent", "bob@support.example.com")
GENEROUS = RateLimits(per_ip=10_000, per_token=10_000)
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclasses.dataclass
class Seeded:
    ticket_id: int
    other_ticket_id: int
    contact_id: int
    public_attachment: int
    internal_attachment: int
    other_attachment: int


async def _seed(rt: Runtime) -> Seeded:
    """Alice's ticket (agent reply with a file, an internal note) and Carol's ticket."""
    async with rt.sessions() as session, session.begin():
        svc = TicketService(session, rt.settings, clock=rt.clock)
        agent = await add_agent(session, "bob@support.example.com", "Bob")
        alice = await get_or_create_contact(session, "alice@example.org", "Alice")
        carol = await get_or_create_contact(session, "carol@other.example", "Carol")
        ticket, _ = await svc.open_ticket(requester=alice, subject="Printer <b>on fire</b>",
                                          text="It burns. <script>alert(1)</script>",
                                          actor=Actor("contact", alice.email))
        sha = rt.store.put(b"%PDF-1.4 manual")
        public = await svc.add_message(
            ticket, kind="public", text="Try the manual.", actor=AGENT, author_agent=agent,
            attachments=[NewAttachment("manual.html", "text/html", 15, sha)])
        png = rt.store.put(b"\x89PNG\r\n\x1a\nsecret")
        internal = await svc.add_message(
            ticket, kind="internal", text="SECRET NOTE customer is grumpy", actor=AGENT,
            author_agent=agent, attachments=[NewAttachment("notes.png", "image/png", 14, png)])
        await svc.set_status(ticket, "Pending", AGENT)
        other, first = await svc.open_ticket(
            requester=carol, subject="Carol elsewhere", text="Carol's problem", actor=AGENT,
            attachments=[NewAttachment("carol.png", "image/png", 14, png)])
        return Seeded(ticket.id, other.id, alice.id, public.attachments[0].id,
                      internal.attachments[0].id, first.attachments[0].id)


@pytest.fixture
async def seeded(runtime: Runtime) -> Seeded:
    return await _seed(runtime)


def _client(app: Any, *, raise_errors: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
    return httpx.AsyncClient(transport=transport, base_url="http://portal.test")


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(runtime, limits=GENEROUS)) as c:
        yield c


async def _ticket(rt: Runtime, ticket_id: int) -> Ticket:
    async with rt.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


async def _token(rt: Runtime, purpose: Purpose, ticket_id: int, contact_id: int, *,
                 signer: LinkSigner | None = None, **extra: Any) -> str:
    ticket = await _ticket(rt, ticket_id)
    signer = signer or LinkSigner(rt.secrets, view_max_age=timedelta(days=30))
    return signer.sign(purpose, ticket.id, contact_id, ticket.link_secret, **extra)


async def _messages(rt: Runtime, ticket_id: int) -> list[Message]:
    async with rt.sessions() as session:
        return list((await session.execute(
            select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)
        )).unique().scalars())


def _csrf(page: httpx.Response) -> str:
    match = CSRF_RE.search(page.text)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def _reply(client: httpx.AsyncClient, token: str, text: str = "Still burning",
                 **fields: str) -> httpx.Response:
    page = await client.get(f"/t/{token}")
    data = {"text": text, "csrf": _csrf(page), "website": "", **fields}
    return await client.post(f"/t/{token}", data=data)


# -- pages ----------------------------------------------------------------------------------

async def test_ticket_page_shows_the_public_thread_and_never_internal_notes(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/t/{token}")
    assert page.status_code == 200
    assert "TKT-000001" in page.text and "Pending" in page.text and "normal" in page.text
    assert "Try the manual." in page.text and "manual.html" in page.text
    assert "SECRET NOTE" not in page.text and "notes.png" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script" not in page.text and "<b>on fire" not in page.text
    assert re.search(r'href="/d/[^"]+"', page.text)


async def test_every_response_carries_the_security_headers(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    for path in (f"/t/{token}", "/t/garbage", "/my", "/healthz", "/static/portal.css"):
        headers = (await client.get(path)).headers
        csp = headers["content-security-policy"]
        assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


async def test_download_serves_non_images_as_octet_stream_attachments(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/t/{token}")
    link = re.search(r'href="(/d/[^"]+)"', page.text)
    assert link
    response = await client.get(link.group(1))
    assert response.status_code == 200 and response.content == b"%PDF-1.4 manual"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith('attachment; filename="manual.html"')
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


async def test_download_link_cannot_reach_internal_or_other_tickets_attachments(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    for attachment in (seeded.internal_attachment, seeded.other_attachment):
        token = await _token(runtime, Purpose.DOWNLOAD, seeded.ticket_id, seeded.contact_id,
                             attachment=attachment)
        response = await client.get(f"/d/{token}")
        assert response.status_code == 404
        assert b"PNG" not in response.content


async def test_unexpected_failure_renders_a_500_page_without_traceback(
        runtime: Runtime, seeded: Seeded) -> None:
    app = create_app(runtime, limits=GENEROUS)

    def broken(_sha: str) -> bytes:
        raise RuntimeError("disk exploded at /secret/path")

    app.state.portal.rt = dataclasses.replace(runtime, store=_BrokenStore(broken))
    token = await _token(runtime, Purpose.DOWNLOAD, seeded.ticket_id, seeded.contact_id,
                         attachment=seeded.public_attachment)
    async with _client(app, raise_errors=False) as client:
        response = await client.get(f"/d/{token}")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "Traceback" not in response.text and "/secret/path" not in response.text


class _BrokenStore:
    def __init__(self, get: Any) -> None:
        self.get = get


# -- replies --------------------------------------------------------------------------------

async def test_reply_with_attachment_adds_a_web_message_reopens_and_notifies(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/t/{token}")
    response = await client.post(
        f"/t/{token}", data={"text": "Here is a photo", "csrf": _csrf(page), "website": ""},
        files=[("attachments", ("photo.png", b"\x89PNG\r\n\x1a\nphoto", "image/png"))])
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/t/{token}?sent=1")
    messages = await _messages(runtime, seeded.ticket_id)
    last = messages[-1]
    assert (last.kind, last.via, last.text, last.author_contact_id) == (
        "public", "web", "Here is a photo", seeded.contact_id)
    assert [(a.filename, a.content_type, a.size) for a in last.attachments] == [
        ("photo.png", "image/png", 13)]
    assert runtime.store.get(last.attachments[0].sha256) == b"\x89PNG\r\n\x1a\nphoto"
    assert (await _ticket(runtime, seeded.ticket_id)).status == "Open"
    async with runtime.sessions() as session:
        notices = (await session.execute(select(OutboxRow.template).where(
            OutboxRow.ticket_id == seeded.ticket_id))).scalars().all()
    assert "agent_reply_notice" in notices
    shown = await client.get(f"/t/{token}?sent=1")
    assert "Here is a photo" in shown.text and "your reply was added" in shown.text


async def test_reply_over_the_upload_limit_is_refused_and_keeps_the_draft(
        runtime: Runtime, seeded: Seeded) -> None:
    small = dataclasses.replace(runtime.settings, portal=dataclasses.replace(
        runtime.settings.portal, max_upload_bytes=10))
    app = create_app(dataclasses.replace(runtime, settings=small), limits=GENEROUS)
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    async with _client(app) as client:
        page = await client.get(f"/t/{token}")
        response = await client.post(
            f"/t/{token}", data={"text": "big one", "csrf": _csrf(page)},
            files=[("attachments", ("big.bin", b"x" * 11, "application/x-big"))])
    assert response.status_code == 413
    assert "larger than" in response.text and "big one" in response.text
    assert len(await _messages(runtime, seeded.ticket_id)) == 3


async def test_closed_ticket_shows_no_reply_form_and_refuses_replies(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/t/{token}")
    async with runtime.sessions() as session, session.begin():
        ticket = await session.get(Ticket, seeded.ticket_id)
        assert ticket is not None
        await TicketService(session, runtime.settings).set_status(ticket, "Closed", AGENT)
    closed = await client.get(f"/t/{token}")
    assert "This ticket is closed" in closed.text and 'name="text"' not in closed.text
    response = await client.post(f"/t/{token}", data={"text": "late", "csrf": _csrf(page)})
    assert response.status_code == 409
    assert (await _ticket(runtime, seeded.ticket_id)).status == "Closed"
    assert len(await _messages(runtime, seeded.ticket_id)) == 3


# -- refusals ---------------------------------------------------------------------------------

def _forge_ticket(token: str, ticket_id: int) -> str:
    """The same signature over a payload naming another ticket."""
    payload, stamp, signature = token.rsplit(".", 2)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data[0] = ticket_id
    raw = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
    return f"{raw.decode().rstrip('=')}.{stamp}.{signature}"


async def test_tampered_token_gets_403_with_a_fresh_link_form(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, _forge_ticket(token, seeded.other_ticket_id), "x" * 3000, "a.b.c"):
        response = await client.get(f"/t/{bad}")
        assert response.status_code == 403, bad[:40]
        assert "Invalid link" in response.text and 'action="/my"' in response.text
        assert "Carol" not in response.text and "Traceback" not in response.text


async def test_expired_links_get_410_with_a_fresh_link_form(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    old = datetime.now(UTC) - timedelta(days=31)
    stale = LinkSigner(runtime.secrets, view_max_age=timedelta(days=30), clock=lambda: old)
    view = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id,
                        signer=stale)
    rate = await _token(runtime, Purpose.RATE, seeded.ticket_id, seeded.contact_id,
                        signer=stale)
    for path in (f"/t/{view}", f"/csat/{rate}"):
        response = await client.get(path)
        assert response.status_code == 410, path
        assert "expired" in response.text and 'action="/my"' in response.text


async def test_a_token_of_another_purpose_is_refused(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    rate = await _token(runtime, Purpose.RATE, seeded.ticket_id, seeded.contact_id)
    view = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    assert (await client.get(f"/t/{rate}")).status_code == 403
    assert (await client.get(f"/csat/{view}")).status_code == 403
    assert (await client.get(f"/d/{view}")).status_code == 403
    assert (await client.get(f"/my/{view}")).status_code == 403


async def test_revoke_links_command_withdraws_every_link_to_the_ticket(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    view = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    rate = await _token(runtime, Purpose.RATE, seeded.ticket_id, seeded.contact_id)
    other = await _token(runtime, Purpose.VIEW, seeded.other_ticket_id, seeded.contact_id)
    assert (await client.get(f"/t/{view}")).status_code == 200
    result = await asyncio.to_thread(
        CliRunner().invoke, revoke_links, ["--config", runtime.settings.source, "TKT-000001"])
    assert result.exit_code == 0, result.output
    assert "TKT-000001" in result.output
    for path in (f"/t/{view}", f"/csat/{rate}"):
        response = await client.get(path)
        assert response.status_code == 410 and "no longer valid" in response.text
    assert (await client.get(f"/t/{other}")).status_code == 200
    fresh = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    assert (await client.get(f"/t/{fresh}")).status_code == 200
    async with runtime.sessions() as session:
        actions = (await session.execute(select(AuditEvent.action).where(
            AuditEvent.ticket_id == seeded.ticket_id))).scalars().all()
    assert "ticket.links_revoked" in actions


async def test_post_without_csrf_or_with_another_pages_csrf_is_refused(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    other = await _token(runtime, Purpose.VIEW, seeded.other_ticket_id, seeded.contact_id)
    await client.get(f"/t/{token}")
    missing = await client.post(f"/t/{token}", data={"text": "no csrf"})
    assert missing.status_code == 403 and "could not be verified" in missing.text
    foreign = _csrf(await client.get(f"/t/{other}"))
    crossed = await client.post(f"/t/{token}", data={"text": "crossed", "csrf": foreign})
    assert crossed.status_code == 403
    async with _client(create_app(runtime, limits=GENEROUS)) as stranger:
        no_cookie = await stranger.post(f"/t/{token}",
                                        data={"text": "x", "csrf": foreign})
    assert no_cookie.status_code == 403
    assert len(await _messages(runtime, seeded.ticket_id)) == 3


async def test_filled_honeypot_is_refused_and_nothing_is_added(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    response = await _reply(client, token, website="http://spam.example")
    assert response.status_code == 400
    assert len(await _messages(runtime, seeded.ticket_id)) == 3


async def test_posts_are_rate_limited_per_token_and_per_ip(
        runtime: Runtime, seeded: Seeded) -> None:
    token = await _token(runtime, Purpose.VIEW, seeded.ticket_id, seeded.contact_id)
    other = await _token(runtime, Purpose.VIEW, seeded.other_ticket_id, seeded.contact_id)
    app = create_app(runtime, limits=RateLimits(per_ip=3, per_token=2))
    async with _client(app) as client:
        assert (await _reply(client, token, "one")).status_code == 303
        assert (await _reply(client, token, "two")).status_code == 303
        limited = await _reply(client, token, "three")
        assert limited.status_code == 429 and "Too many requests" in limited.text
        assert (await _reply(client, other, "per ip")).status_code == 429
    texts = [m.text for m in await _messages(runtime, seeded.ticket_id)]
    assert "two" in texts and "three" not in texts


# -- ratings --------------------------------------------------------------------------------

async def _ratings(rt: Runtime) -> list[CsatRating]:
    async with rt.sessions() as session:
        return list((await session.execute(select(CsatRating))).scalars())


async def test_one_click_score_link_preselects_and_records_nothing(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    rate = await _token(runtime, Purpose.RATE, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/csat/{rate}?score=4")
    assert page.status_code == 200
    assert re.search(r'value="4"\s+checked', page.text)
    assert not re.search(r'value="[1235]"\s+checked', page.text)
    assert 'name="comment"' in page.text
    assert await _ratings(runtime) == []


async def test_rating_is_recorded_then_updated_as_the_one_rating_of_the_ticket(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    rate = await _token(runtime, Purpose.RATE, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/csat/{rate}?score=4")
    first = await client.post(f"/csat/{rate}", data={
        "score": "4", "comment": "Quick & friendly", "csrf": _csrf(page), "website": ""})
    assert first.status_code == 303
    [rating] = await _ratings(runtime)
    assert (rating.ticket_id, rating.score, rating.comment) == (
        seeded.ticket_id, 4, "Quick & friendly")
    page = await client.get(f"/csat/{rate}?saved=1")
    assert "Thank you for your rating" in page.text and "Quick &amp; friendly" in page.text
    second = await client.post(f"/csat/{rate}", data={
        "score": "2", "comment": "Broke again", "csrf": _csrf(page)})
    assert second.status_code == 303
    [rating] = await _ratings(runtime)
    assert (rating.score, rating.comment) == (2, "Broke again")
    async with runtime.sessions() as session:
        rated = (await session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "csat.rated"))).scalar_one()
    assert rated == 2


async def test_rating_refuses_scores_outside_one_to_five(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    rate = await _token(runtime, Purpose.RATE, seeded.ticket_id, seeded.contact_id)
    page = await client.get(f"/csat/{rate}")
    for score in ("0", "6", "x", ""):
        response = await client.post(f"/csat/{rate}", data={"score": score,
                                                             "csrf": _csrf(page)})
        assert response.status_code == 400
    assert await _ratings(runtime) == []


# -- my tickets -------------------------------------------------------------------------------

async def _ask_link(client: httpx.AsyncClient, email: str) -> httpx.Response:
    page = await client.get("/my")
    return await client.post("/my", data={"email": email, "csrf": _csrf(page), "website": ""})


async def _magic_links(rt: Runtime) -> list[OutboxRow]:
    async with rt.sessions() as session:
        return list((await session.execute(select(OutboxRow).where(
            OutboxRow.kind == "magic_link").order_by(OutboxRow.id))).scalars())


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def test_my_tickets_answers_the_same_for_known_and_unknown_addresses(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    known = await _ask_link(client, "Alice@Example.org")
    unknown = await _ask_link(client, "nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", known.text) == strip.sub("", unknown.text)
    [row] = await _magic_links(runtime)
    assert row.recipients == ["alice@example.org"] and row.template == "magic_link"
    assert row.context["url"].startswith(runtime.settings.portal.base_url + "/my/")


async def test_magic_link_form_refuses_missing_csrf_and_filled_honeypot(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    page = await client.get("/my")
    no_csrf = await client.post("/my", data={"email": "alice@example.org"})
    bot = await client.post("/my", data={"email": "alice@example.org", "csrf": _csrf(page),
                                          "website": "buy now"})
    assert (no_csrf.status_code, bot.status_code) == (403, 400)
    assert await _magic_links(runtime) == []


async def test_member_sees_created_and_watched_tickets_only(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    async with runtime.sessions() as session, session.begin():
        svc = TicketService(session, runtime.settings, clock=runtime.clock)
        alice = await get_or_create_contact(session, "alice@example.org")
        dave = await get_or_create_contact(session, "dave@example.org")
        watched, _ = await svc.open_ticket(requester=dave, subject="Dave watched by Alice",
                                           text="x", actor=AGENT)
        await svc.add_watcher(watched, alice, AGENT)
        await svc.open_ticket(requester=dave, subject="Dave alone", text="x", actor=AGENT)
    await _ask_link(client, "alice@example.org")
    [row] = await _magic_links(runtime)
    page = await client.get(_path(row.context["url"]))
    assert page.status_code == 200
    assert "Printer" in page.text and "Dave watched by Alice" in page.text
    assert "Dave alone" not in page.text and "Carol elsewhere" not in page.text
    assert "Reopen" not in page.text and "Add watcher" not in page.text
    view = re.search(r'href="(/t/[^"]+)"', page.text)
    assert view and (await client.get(view.group(1))).status_code == 200


async def test_owner_sees_the_organization_and_reopens_and_manages_watchers(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    async with runtime.sessions() as session, session.begin():
        svc = TicketService(session, runtime.settings, clock=runtime.clock)
        olga = await get_or_create_contact(session, "olga@example.org", "Olga")
        olga.role = "owner"
        dave = await get_or_create_contact(session, "dave@example.org")
        solved, _ = await svc.open_ticket(requester=dave, subject="Dave solved", text="x",
                                          actor=AGENT)
        await svc.set_status(solved, "Resolved", AGENT)
        solved_id = solved.id
    await _ask_link(client, "olga@example.org")
    [row] = await _magic_links(runtime)
    my = _path(row.context["url"])
    page = await client.get(my)
    assert "Dave solved" in page.text and "Printer" in page.text
    assert "Carol elsewhere" not in page.text
    csrf = _csrf(page)
    reopened = await client.post(f"{my}/reopen", data={"ticket": str(solved_id), "csrf": csrf})
    assert reopened.status_code == 303
    assert (await _ticket(runtime, solved_id)).status == "Open"
    added = await client.post(f"{my}/watchers", data={
        "ticket": str(solved_id), "email": "erin@example.org", "action": "add", "csrf": csrf})
    assert added.status_code == 303
    assert "erin@example.org" in (await client.get(my)).text
    outsider = await client.post(f"{my}/watchers", data={
        "ticket": str(solved_id), "email": "x@elsewhere.example", "action": "add",
        "csrf": csrf})
    assert outsider.status_code == 400
    foreign = await client.post(f"{my}/reopen", data={
        "ticket": str(seeded.other_ticket_id), "csrf": csrf})
    assert foreign.status_code == 403
    removed = await client.post(f"{my}/watchers", data={
        "ticket": str(solved_id), "email": "erin@example.org", "action": "remove",
        "csrf": csrf})
    assert removed.status_code == 303
    assert "erin@example.org" not in (await client.get(my)).text


async def test_member_may_not_reopen_through_the_owner_form(
        runtime: Runtime, seeded: Seeded, client: httpx.AsyncClient) -> None:
    async with runtime.sessions() as session, session.begin():
        ticket = await session.get(Ticket, seeded.ticket_id)
        assert ticket is not None
        await TicketService(session, runtime.settings).set_status(ticket, "Resolved", AGENT)
    await _ask_link(client, "alice@example.org")
    [row] = await _magic_links(runtime)
    my = _path(row.context["url"])
    page = await client.get(my)
    assert "Reopen" not in page.text
    csrf = CsrfGuard(runtime.secrets).form_token(client.cookies[CSRF_COOKIE],
                                                 token_scope(my.rsplit("/", 1)[1]))
    response = await client.post(f"{my}/reopen", data={"ticket": str(seeded.ticket_id),
                                                       "csrf": csrf})
    assert response.status_code == 403
    assert (await _ticket(runtime, seeded.ticket_id)).status == "Resolved"


# -- the process role ---------------------------------------------------------------------------

async def test_portal_role_serves_over_http_until_stop_is_set(runtime: Runtime) -> None:
    import socket

    from helpdesk.daemon import role_server
    from portal_lite.service import serve

    assert role_server("portal") is serve
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    task = asyncio.create_task(serve(runtime, stop, sock=sock))
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the portal did not answer on its socket")
        assert response.status_code == 200 and "server" not in response.headers
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        sock.close()
    assert task.exception() is None


# -- pure guards ------------------------------------------------------------------------------

def test_csrf_token_is_bound_to_cookie_and_scope_and_survives_key_rotation() -> None:
    old, new = CsrfGuard(["k1"]), CsrfGuard(["k1", "k2"])
    cookie = CsrfGuard.new_cookie_value()
    token = old.form_token(cookie, token_scope("link-a"))
    assert new.is_valid(cookie, token, token_scope("link-a"))
    assert not new.is_valid(cookie, token, token_scope("link-b"))
    assert not new.is_valid(CsrfGuard.new_cookie_value(), token, token_scope("link-a"))
    assert not new.is_valid(cookie, None, token_scope("link-a"))
    assert not CsrfGuard(["k2"]).is_valid(cookie, token, token_scope("link-a"))


def test_rate_limiter_slides_its_window_with_the_clock() -> None:
    from portal_lite.security import RateLimiter

    now = [0.0]
    limiter = RateLimiter(RateLimits(per_ip=2, per_token=5, window_seconds=60),
                          clock=lambda: now[0])
    assert limiter.allow_post("10.0.0.1", "t") and limiter.allow_post("10.0.0.1", "t")
    assert not limiter.allow_post("10.0.0.1", "t")
    assert limiter.allow_post("10.0.0.2", "t")
    now[0] = 61.0
    assert limiter.allow_post("10.0.0.1", "t")


def test_token_peek_is_bounded_and_never_trusted() -> None:
    import zlib

    from portal_lite.portal import peek_ticket_id

    signer = LinkSigner("k", view_max_age=timedelta(days=1))
    assert peek_ticket_id(signer.sign(Purpose.VIEW, 42, 7, "secret")) == 42
    bomb = base64.urlsafe_b64encode(zlib.compress(b"[" + b"1," * 500_000 + b"1]")).decode()
    for token in ("", "garbage", "a.b.c", "x" * 3000, f".{bomb.rstrip('=')}.a.b"):
        assert peek_ticket_id(token) is None


def test_download_names_are_quoted_safely() -> None:
    from portal_lite.routes import content_disposition

    header = content_disposition('r\u00e9sum\u00e9 "x"\r\n.pdf', inline=False)
    assert header == ("attachment; filename=\"r_sum_ x.pdf\"; "
                      "filename*=UTF-8''r%C3%A9sum%C3%A9%20x.pdf")
