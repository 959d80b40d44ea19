"""``/t/{token}``: a requester's view of one ticket, and the reply form with attachments.

GET shows the reference, subject, status, priority and the public thread (never internal
notes or system messages), each attachment as a signed ``/d/`` link. POST adds a public
message by the link's contact, via "web", through the ticket service with the same
notification listener as email, so agents hear of it exactly as of a mailed reply, and a
Pending or Resolved ticket goes back to Open. A closed ticket takes no replies here.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from helpdesk.audit import Actor
from helpdesk.filenames import clean_filename
from helpdesk.links import Purpose
from helpdesk.models import Contact, Ticket
from helpdesk.refs import parse_ticket_ref
from helpdesk.tickets import NewAttachment, TicketService
from helpdesk.views import ticket_detail
from portal_lite.forms import form_text
from portal_lite.portal import Portal, PortalError, portal_of
from portal_lite.security import token_scope

MAX_FILES = 10
MAX_TEXT_CHARS = 100_000
_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


async def ticket_page(request: Request) -> Response:
    """GET renders the ticket; POST adds the reply and redirects back (303)."""
    portal = portal_of(request)
    token: str = request.path_params["token"]
    if request.method == "POST":
        return await _reply(portal, request, token)
    async with portal.rt.read_sessions() as session:
        _claims, ticket, contact = await portal.verify(session, token, Purpose.VIEW)
        context = await _page_context(portal, session, ticket, contact)
    context["sent"] = request.query_params.get("sent") == "1"
    return portal.render(request, "ticket.html", context, scope=token_scope(token))


async def _page_context(portal: Portal, session: AsyncSession, ticket: Ticket,
                        contact: Contact) -> dict[str, Any]:
    view = await ticket_detail(session, portal.settings, ticket, public_only=True)
    for link in view["links"]:  # the requester's own tickets only (ticket_detail)
        other = await session.execute(select(Ticket).where(
            Ticket.number == parse_ticket_ref(link["ticket"], portal.settings.tickets.prefix)))
        linked = other.unique().scalar_one_or_none()
        if linked is not None:
            link["href"] = "/t/" + portal.sign(Purpose.VIEW, linked, contact)
    for message in view["messages"]:
        for attachment in message["attachments"]:
            attachment["url"] = "/d/" + portal.sign(Purpose.DOWNLOAD, ticket, contact,
                                                    attachment=attachment["id"])
    return {
        "ticket": view,
        "contact": {"email": contact.email, "name": contact.name},
        "can_reply": portal.settings.status_class(ticket.status) != "closed",
        "max_upload_mb": round(portal.settings.portal.max_upload_bytes / 1_048_576, 1),
        "error": None,
        "draft": "",
    }


async def _reply(portal: Portal, request: Request, token: str) -> Response:
    portal.check_rate(request, token)
    limit = portal.settings.portal.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (
            len(declared) > 15 or int(declared) > limit * MAX_FILES + 1_048_576):
        raise PortalError(413, "Too large", "The files you sent are too large.")
    async with portal.rt.read_sessions() as session:
        # Verify before parsing the body: a bad link costs no upload handling.
        await portal.verify(session, token, Purpose.VIEW)
    async with request.form(max_files=MAX_FILES, max_fields=20) as form:
        portal.check_form(request, form, token_scope(token))
        text = form_text(form.get("text")).replace("\r\n", "\n").strip()
        uploads = [f for f in form.getlist("attachments")
                   if isinstance(f, UploadFile) and f.filename]
        problem = _problem(text, uploads, limit)
        stored = [] if problem else [await _store(portal, f) for f in uploads]
    async with portal.rt.sessions() as session, session.begin():
        _claims, ticket, contact = await portal.verify(session, token, Purpose.VIEW)
        if problem is None and portal.settings.status_class(ticket.status) == "closed":
            problem = (409, "This ticket is closed. Please write to us by email to open a "
                            "new one.")
        if problem is not None:
            context = await _page_context(portal, session, ticket, contact)
            context.update(error=problem[1], draft=text, sent=False)
            return portal.render(request, "ticket.html", context, status=problem[0],
                                 scope=token_scope(token))
        service = TicketService.for_runtime(session, portal.rt)
        await service.add_message(
            ticket, kind="public", text=text, actor=Actor("contact", contact.email, contact.id),
            author_contact=contact, via="web", attachments=stored,
        )
    return RedirectResponse(f"/t/{token}?sent=1#latest", status_code=303)


def _problem(text: str, uploads: list[UploadFile], limit: int) -> tuple[int, str] | None:
    """Why the reply cannot be taken (status, message for the form), or None."""
    if not text and not uploads:
        return 400, "Please write a message or attach a file."
    if len(text) > MAX_TEXT_CHARS:
        return 413, f"Your message is too long (at most {MAX_TEXT_CHARS:,} characters)."
    for upload in uploads:
        if upload.size is None or upload.size > limit:
            return 413, (f"The file {clean_filename(upload.filename or '')!r} is larger than "
                         f"{limit / 1_048_576:.1f} MB.")
    return None


async def _store(portal: Portal, upload: UploadFile) -> NewAttachment:
    data = await upload.read()
    digest = await anyio.to_thread.run_sync(portal.rt.store.put, data)
    content_type = safe_content_type(upload.content_type)
    return NewAttachment(filename=clean_filename(upload.filename or "", 1, content_type),
                         content_type=content_type, size=len(data), sha256=digest)


def safe_content_type(declared: str | None) -> str:
    """The browser's declared type when it is a plain ``type/subtype``, else octet-stream."""
    value = (declared or "").split(";", 1)[0].strip().lower()
    return value if _MIME_RE.match(value) else "application/octet-stream"

