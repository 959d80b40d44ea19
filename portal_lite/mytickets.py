"""``/my``: mail a requester a signed link to all their tickets, and the list it opens.

POST ``/my`` answers the same page, at once, whether or not the address is known, so it
reveals nothing, not even through its timing: the lookup and the outbox write run after
the response has gone (a background task), and a known address gets a ``my-tickets`` link
through the outbox (at most :data:`MAILS_PER_HOUR` an hour). Members see the tickets they
created or watch; organization owners and admins see all their organization's tickets and
may reopen resolved ones and add or remove watchers (people of their own organization).

A ``my-tickets`` token, like every link, names a ticket: the contact's newest visible
ticket anchors it, so rotating that ticket's link secret withdraws the list link too. It
also carries the instant it was issued: a ticket whose links were revoked after that
(``helpdesk tickets revoke-links``) is neither listed nor managed through it; a fresh
link, mailed to the address again, shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from helpdesk import outbox
from helpdesk.audit import Actor
from helpdesk.directory import get_or_create_contact
from helpdesk.links import LINKS_REVOKED, LinkRevoked, Purpose
from helpdesk.models import AuditEvent, Contact, Ticket, Watcher
from helpdesk.tickets import TicketService
from portal_lite.forms import form_address, form_id
from portal_lite.portal import Portal, PortalError, portal_of
from portal_lite.security import MY_SCOPE, token_scope

MAILS_PER_HOUR = 3
MAX_LISTED = 200
MANAGER_ROLES = frozenset({"owner", "admin"})
ISSUED = "issued"
"""The my-tickets claim with the issuing instant, in microseconds since the epoch."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ISSUED = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

log = structlog.get_logger("portal_lite.mytickets")


def is_manager(contact: Contact) -> bool:
    """Whether the contact manages its organization's tickets (owner or admin of one)."""
    return contact.role in MANAGER_ROLES and contact.organization_id is not None


def visible_to(contact: Contact) -> ColumnElement[bool]:
    """The tickets a contact may list: created, watched, or (managers) their organization's."""
    watched = select(Watcher.ticket_id).where(Watcher.contact_id == contact.id)
    condition = or_(Ticket.requester_id == contact.id, Ticket.id.in_(watched))
    if is_manager(contact):
        condition = or_(condition, Ticket.organization_id == contact.organization_id)
    return and_(condition, Ticket.deleted_at.is_(None))


async def request_link(request: Request) -> Response:
    """GET: the address form; POST: mail a link if the address is known, same answer."""
    portal = portal_of(request)
    if request.method == "GET":
        return portal.render(request, "my_request.html", {"sent": False})
    form = await request.form(max_files=0, max_fields=10)
    email = form_address(form.get("email"))
    portal.check_rate(request, f"my:{email}")
    portal.check_form(request, form, MY_SCOPE)
    if email is None:
        return portal.render(request, "my_request.html",
                             {"sent": False, "error": "Please enter your email address."},
                             status=400)
    response = portal.render(request, "my_request.html", {"sent": True})
    response.background = BackgroundTask(_mail_link_later, portal, email)
    return response


async def _mail_link_later(portal: Portal, email: str) -> None:
    """Look the address up and queue its mail, after the answer has gone to the client.

    The requester has already been told "if we know you, we sent a link", so a failure
    here can only be logged (without the address).
    """
    try:
        async with portal.rt.sessions() as session, session.begin():
            await _mail_link(portal, session, email)
    except Exception as exc:
        log.error("portal.magic_link_failed", error=type(exc).__name__, exc_info=exc)


async def _mail_link(portal: Portal, session: AsyncSession, email: str) -> None:
    contact = (await session.execute(
        select(Contact).where(Contact.email == email))).scalar_one_or_none()
    if contact is None or contact.is_undeliverable:
        return
    anchor = (await session.execute(
        select(Ticket).where(visible_to(contact)).order_by(Ticket.id.desc()).limit(1)
    )).unique().scalar_one_or_none()
    if anchor is None:
        return
    now = portal.rt.clock()
    sent = await outbox.count_recent(session, kind="magic_link", to=email,
                                     since=now - timedelta(hours=1))
    if sent >= MAILS_PER_HOUR:
        return
    token = portal.sign(Purpose.MY_TICKETS, anchor, contact,
                        **{ISSUED: (now - _EPOCH) // timedelta(microseconds=1)})
    base = portal.settings.portal.base_url.rstrip("/")
    hours = int(portal.signer.max_age(Purpose.MY_TICKETS).total_seconds() // 3600)
    await outbox.enqueue(
        session, kind="magic_link", template="magic_link", to=[email],
        instance_id=portal.settings.instance.id, secret=portal.rt.secrets[-1],
        domain=portal.rt.mail_domain, at=now,
        context={"url": f"{base}/my/{token}", "valid_hours": hours,
                 "product_name": portal.settings.portal.product_name,
                 "name": contact.name,
                 "subject": f"Your tickets at {portal.settings.portal.product_name}"},
    )


async def my_tickets(request: Request) -> Response:
    """The list of the link holder's tickets, each with its own view link."""
    portal = portal_of(request)
    token: str = request.path_params["token"]
    async with portal.rt.read_sessions() as session:
        claims, _anchor, contact = await portal.verify(session, token, Purpose.MY_TICKETS)
        withdrawn = links_revoked_since(issued_at(claims.extra))
        listed = visible_to(contact) & ~withdrawn
        tickets = list((await session.execute(
            select(Ticket).where(listed).order_by(Ticket.id.desc())
            .limit(MAX_LISTED))).unique().scalars())
        manager = is_manager(contact)
        watchers: dict[int, list[str]] = {}
        if manager and tickets:
            rows = await session.execute(
                select(Watcher.ticket_id, Contact.email).join(
                    Contact, Contact.id == Watcher.contact_id)
                .where(Watcher.ticket_id.in_([t.id for t in tickets])).order_by(Contact.email))
            for ticket_id, address in rows:
                watchers.setdefault(ticket_id, []).append(address)
        total = (await session.execute(
            select(func.count()).select_from(Ticket).where(listed))).scalar_one()
        hidden = (await session.execute(select(func.count()).select_from(Ticket).where(
            visible_to(contact) & withdrawn))).scalar_one()
    rows_out = [{
        "id": t.id, "reference": portal.reference(t), "subject": t.subject,
        "status": t.status, "priority": t.priority, "type": t.type,
        "updated_at": t.updated_at, "url": "/t/" + portal.sign(Purpose.VIEW, t, contact),
        "requester": t.requester.email,
        "manageable": manager and t.organization_id == contact.organization_id,
        "resolved": portal.settings.status_class(t.status) == "resolved",
        "watchers": watchers.get(t.id, []),
    } for t in tickets]
    return portal.render(request, "my_list.html", {
        "contact": {"email": contact.email, "name": contact.name},
        "tickets": rows_out, "total": total, "withdrawn": hidden, "token": token,
        "is_manager": manager,
        "done": request.query_params.get("done", ""),
    }, scope=token_scope(token))


async def _load_managed(portal: Portal, session: AsyncSession, token: str,
                        ticket_id: object) -> tuple[Contact, Ticket]:
    claims, _anchor, contact = await portal.verify(session, token, Purpose.MY_TICKETS)
    number = form_id(ticket_id)
    ticket = await session.get(Ticket, number) if number is not None else None
    if not is_manager(contact) or ticket is None \
            or ticket.organization_id != contact.organization_id:
        raise PortalError(403, "Not allowed",
                          "Only owners and admins of the organization can do this.")
    if (await session.execute(select(
            links_revoked_since(issued_at(claims.extra), ticket.id)))).scalar_one():
        raise LinkRevoked(f"links of ticket {ticket.id} were revoked after this list link")
    return contact, ticket


def issued_at(extra: Mapping[str, Any]) -> datetime:
    """When a my-tickets token was issued; the epoch for tokens without (or with a bad) claim.

    The epoch makes an old token treat every revocation ever made as after it: such a
    token is at most a day old, and hiding a ticket from it is the safe mistake.
    """
    value = extra.get(ISSUED)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ISSUED:
        return _EPOCH + timedelta(microseconds=value)
    return _EPOCH


def links_revoked_since(since: datetime, ticket: int | None = None) -> ColumnElement[bool]:
    """Whether the ticket's links were revoked at or after ``since`` (by its audit event).

    Correlated to the ``tickets`` row of the enclosing query by default; one ticket's id
    otherwise. Both use the index on ``audit_events.ticket_id``.
    """
    which = Ticket.id if ticket is None else ticket
    return exists().where(AuditEvent.ticket_id == which,
                          AuditEvent.action == LINKS_REVOKED, AuditEvent.created_at >= since)


async def reopen(request: Request) -> Response:
    """Owners and admins: move a resolved ticket of their organization back to Open."""
    portal = portal_of(request)
    token: str = request.path_params["token"]
    portal.check_rate(request, token)
    form = await request.form(max_files=0, max_fields=10)
    portal.check_form(request, form, token_scope(token))
    async with portal.rt.sessions() as session, session.begin():
        contact, ticket = await _load_managed(portal, session, token, form.get("ticket"))
        if portal.settings.status_class(ticket.status) != "resolved":
            raise PortalError(409, "Not resolved", "Only resolved tickets can be reopened.")
        service = TicketService.for_runtime(session, portal.rt)
        await service.set_status(ticket, portal.settings.tickets.statuses[0].name,
                                 Actor("contact", contact.email, contact.id),
                                 reason="reopened in the portal")
    return RedirectResponse(f"/my/{token}?done=reopened", status_code=303)


async def watchers(request: Request) -> Response:
    """Owners and admins: add or remove a watcher (of their organization) on a ticket."""
    portal = portal_of(request)
    token: str = request.path_params["token"]
    portal.check_rate(request, token)
    form = await request.form(max_files=0, max_fields=10)
    portal.check_form(request, form, token_scope(token))
    email = form_address(form.get("email"))
    action = form.get("action")
    if email is None or action not in ("add", "remove"):
        raise PortalError(400, "Not accepted", "Please give an email address.")
    async with portal.rt.sessions() as session, session.begin():
        contact, ticket = await _load_managed(portal, session, token, form.get("ticket"))
        actor = Actor("contact", contact.email, contact.id)
        service = TicketService.for_runtime(session, portal.rt)
        if action == "add":
            person = await get_or_create_contact(
                session, email, freemail=portal.settings.tickets.freemail_domains)
            if person.organization_id != contact.organization_id:
                raise PortalError(400, "Not accepted",
                                  "Only people of your organization can be added.")
            await service.add_watcher(ticket, person, actor)
        else:
            gone = (await session.execute(
                select(Contact).where(Contact.email == email))).scalar_one_or_none()
            if gone is not None:
                await service.remove_watcher(ticket, gone, actor)
    return RedirectResponse(f"/my/{token}?done=watchers", status_code=303)
