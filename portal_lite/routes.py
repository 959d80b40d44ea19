"""The portal's shared plumbing: page rendering, link checking, POST guards, errors, routes.

Handlers live in ``tickets.py``, ``ratings.py`` and ``mytickets.py``; they reach the
per-app :class:`Portal` through ``request.app.state.portal`` (no module-level state).
Every refusal becomes a page here, once: a bad link 403, an expired or revoked one 410
(both with a form to ask for fresh links), a failed guard 400/403/429, anything
unexpected 500, and never a traceback.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import structlog
from itsdangerous import BadData
from itsdangerous.encoding import base64_decode
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from helpdesk.errors import DomainError
from helpdesk.links import (
    MAX_TOKEN_LENGTH,
    BadLink,
    LinkClaims,
    LinkError,
    LinkExpired,
    LinkSigner,
    Purpose,
    is_id,
)
from helpdesk.models import Attachment, Contact, Message, Ticket
from helpdesk.numbering import format_number
from helpdesk.resources import templates_dir
from helpdesk.runtime import Runtime
from portal_lite.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    MY_SCOPE,
    CsrfGuard,
    RateLimiter,
    client_ip,
    honeypot_filled,
)

log = structlog.get_logger("portal_lite")

TEMPLATE_DIR = templates_dir("portal")
_PEEK_LIMIT = 4096
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Attachment types shown inline; everything else (SVG included) downloads as octet-stream."""


class PortalError(Exception):
    """Raised by a handler to answer with an error page (a status and a safe message)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class Portal:
    """What every handler of one app needs: runtime, signer, templates and guards."""

    def __init__(self, rt: Runtime, *, signer: LinkSigner, csrf: CsrfGuard,
                 limiter: RateLimiter, template_dir: Path = TEMPLATE_DIR) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.signer = signer
        self.csrf = csrf
        self.limiter = limiter
        self.env = Environment(
            loader=FileSystemLoader(str(template_dir)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True, lstrip_blocks=True, auto_reload=False,
        )
        self.env.filters["when"] = _when

    def reference(self, ticket: Ticket) -> str:
        t = self.settings.tickets
        return format_number(ticket.number, t.prefix, t.digits)

    # -- rendering ------------------------------------------------------------------

    def render(self, request: Request, template: str, context: Mapping[str, Any], *,
               status: int = 200, scope: str = MY_SCOPE) -> HTMLResponse:
        """Render a page whose forms post with CSRF ``scope``; set the CSRF cookie if new.

        Every page gets ``csrf`` (the scope's form token) and ``my_csrf`` (for the
        "mail me fresh links" form that error pages and the footer carry).
        """
        cookie = self.csrf.cookie_value(request)
        is_new = cookie is None
        if cookie is None:
            cookie = self.csrf.new_cookie_value()
        portal = self.settings.portal
        body = self.env.get_template(template).render(
            product_name=portal.product_name, logo_url=portal.logo_url,
            csrf_field=CSRF_FIELD, csrf=self.csrf.form_token(cookie, scope),
            my_csrf=self.csrf.form_token(cookie, MY_SCOPE), **context,
        )
        response = HTMLResponse(body, status_code=status)
        if is_new:
            response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="lax",
                                secure=self.csrf.secure_cookie, path="/")
        return response

    def error_page(self, request: Request, status: int, title: str, message: str, *,
                   offer_fresh_link: bool = True) -> HTMLResponse:
        return self.render(request, "error.html", {
            "title": title, "message": message, "offer_fresh_link": offer_fresh_link,
        }, status=status)

    # -- links ----------------------------------------------------------------------

    async def verify(self, session: AsyncSession, token: str, purpose: Purpose) -> tuple[
            LinkClaims, Ticket, Contact]:
        """Check a link token and load its ticket and contact.

        The ticket named inside the (not yet trusted) token is loaded first, only to hand
        :meth:`LinkSigner.verify` its current link secret; the signer then decides.

        Raises:
            LinkError: any refusal, rendered by the app's error handler.
        """
        ticket_id = peek_ticket_id(token)
        ticket = await session.get(Ticket, ticket_id) if ticket_id is not None else None
        secrets = {ticket.id: ticket.link_secret} if ticket is not None else {}
        claims = self.signer.verify(token, purpose, ticket_secret_for=secrets.get,
                                    expected_ticket=ticket_id)
        assert ticket is not None  # verify refuses tokens whose ticket is missing
        contact = await session.get(Contact, claims.contact)
        if contact is None:
            raise BadLink(f"contact {claims.contact} does not exist")
        return claims, ticket, contact

    def sign(self, purpose: Purpose, ticket: Ticket, contact: Contact, **extra: Any) -> str:
        return self.signer.sign(purpose, ticket.id, contact.id, ticket.link_secret, **extra)

    # -- POST guards ----------------------------------------------------------------

    def check_rate(self, request: Request, token_key: str | None) -> None:
        """Apply the per-IP and per-token limits; raises a 429 page when exceeded."""
        if not self.limiter.allow_post(client_ip(request), token_key):
            log.info("portal.rate_limited", path_kind=request.url.path.split("/")[1])
            raise PortalError(429, "Too many requests",
                              "Please wait a minute before sending this form again.")

    def check_form(self, request: Request, form: Mapping[str, Any], scope: str) -> None:
        """CSRF then honeypot; raises the refusal page."""
        submitted = form.get(CSRF_FIELD)
        if not self.csrf.is_valid(self.csrf.cookie_value(request),
                                  submitted if isinstance(submitted, str) else None, scope):
            raise PortalError(403, "Form expired",
                              "This form could not be verified. Please reload the page "
                              "and send it again.")
        if honeypot_filled(form):
            log.info("portal.honeypot")
            raise PortalError(400, "Not accepted", "This form could not be accepted.")


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def peek_ticket_id(token: str) -> int | None:
    """The ticket id inside a token, read *without* checking anything (a lookup hint only).

    Bounded on purpose: the token is untrusted, so its length is capped and a compressed
    payload is inflated to a few KiB at most (itsdangerous itself checks the signature
    before it decompresses; this peek runs before that check).
    """
    if not token.isascii() or len(token) > MAX_TOKEN_LENGTH or token.count(".") < 2:
        return None
    payload = token.rsplit(".", 2)[0]
    try:
        raw = base64_decode(payload.lstrip("."))
        if payload.startswith("."):
            raw = zlib.decompressobj().decompress(raw, _PEEK_LIMIT)
        data = json.loads(raw)
    except (BadData, ValueError, RecursionError, zlib.error):
        return None
    value = data[0] if isinstance(data, list) and data else None
    return value if is_id(value) else None


def _when(value: str | datetime | None) -> str:
    if not value:
        return ""
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.strftime("%Y-%m-%d %H:%M UTC")


# -- routes shared by every page ---------------------------------------------------------

async def healthz(request: Request) -> Response:
    """Liveness and database reachability, for load balancers and systemd checks."""
    portal = portal_of(request)
    try:
        async with portal.rt.read_sessions() as session:
            await session.execute(select(1))
    except Exception:
        return PlainTextResponse("database unavailable\n", status_code=503)
    return PlainTextResponse("ok\n")


async def download(request: Request) -> Response:
    """``/d/{token}``: one attachment of a public message, as a download.

    Only images of a few raster types are served inline under their own type; anything
    else is ``application/octet-stream`` with ``Content-Disposition: attachment``, and the
    response carries a sandboxing CSP, so an uploaded HTML or SVG file never runs here.
    """
    portal = portal_of(request)
    token = request.path_params["token"]
    async with portal.rt.read_sessions() as session:
        claims, _ticket, _contact = await portal.verify(session, token, Purpose.DOWNLOAD)
        attachment_id = claims.extra.get("attachment")
        if not is_id(attachment_id):
            raise PortalError(404, "Not found", "This attachment is not available.")
        row = (await session.execute(
            select(Attachment).join(Message, Message.id == Attachment.message_id).where(
                Attachment.id == attachment_id, Message.ticket_id == claims.ticket,
                Message.kind == "public")
        )).scalar_one_or_none()
    if row is None:
        raise PortalError(404, "Not found", "This attachment is not available.")
    try:
        data = await anyio.to_thread.run_sync(portal.rt.store.get, row.sha256)
    except (OSError, ValueError):
        log.error("portal.blob_missing", attachment=row.id)
        raise PortalError(404, "Not found", "This attachment is not available.") from None
    is_image = row.content_type.lower() in INLINE_IMAGE_TYPES
    return Response(data, media_type=row.content_type.lower() if is_image
                    else "application/octet-stream", headers={
        "content-disposition": content_disposition(row.filename, inline=is_image),
        "content-security-policy": "default-src 'none'; sandbox",
    })


def content_disposition(filename: str, *, inline: bool) -> str:
    """A Content-Disposition header with an ASCII fallback and the RFC 6266 UTF-8 name."""
    from urllib.parse import quote

    cleaned = "".join(c for c in filename if c.isprintable() and c not in '"\\/') or "file"
    fallback = "".join(c if c.isascii() else "_" for c in cleaned)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


# -- error handlers ---------------------------------------------------------------------

async def on_link_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LinkError)
    log.info("portal.link_refused", error=type(exc).__name__, reason=exc.reason)
    portal = portal_of(request)
    if isinstance(exc, LinkExpired):
        title, message = "Link expired", (
            "This link has expired. Enter your email address and we will send you "
            "fresh links to your tickets.")
    elif exc.http_status == 410:
        title, message = "Link withdrawn", (
            "This link is no longer valid. Enter your email address to receive "
            "current links to your tickets.")
    else:
        title, message = "Invalid link", (
            "This link is not valid; it may have been cut short by your mail program. "
            "Enter your email address and we will send you a fresh one.")
    return portal.error_page(request, exc.http_status, title, message)


async def on_portal_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PortalError)
    return portal_of(request).error_page(request, exc.status, exc.title, exc.message,
                                         offer_fresh_link=exc.status in (404, 410))


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return portal_of(request).error_page(request, exc.http_status, "Not possible", str(exc),
                                         offer_fresh_link=False)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Not allowed", 413: "Too large", 400: "Bad request"}
    title = titles.get(exc.status_code, "Request refused")
    return portal_of(request).error_page(
        request, exc.status_code, title, "This request could not be handled.",
        offer_fresh_link=exc.status_code == 404)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its request body arrived: nothing failed, nobody to answer.

    Handled here, not by the last resort, so it is neither logged as an error nor
    re-raised to the server (which would log a traceback); the response goes nowhere.
    """
    assert isinstance(exc, ClientDisconnect)
    log.info("portal.client_gone", path_kind=request.url.path.split("/")[1])
    return Response(status_code=400)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """The last resort: log the exception, show a plain page, never the traceback."""
    log.error("portal.failed", error=type(exc).__name__, exc_info=exc)
    try:
        return portal_of(request).error_page(
            request, 500, "Something went wrong",
            "We could not handle this request. Please try again in a few minutes.",
            offer_fresh_link=False)
    except Exception:
        return PlainTextResponse("Internal error\n", status_code=500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    LinkError: on_link_error,
    PortalError: on_portal_error,
    DomainError: on_domain_error,
    HTTPException: on_http_error,
    ClientDisconnect: on_client_gone,
    Exception: on_unexpected,
}


def build_routes(static_dir: Path) -> list[Route | Mount]:
    """Every URL of the portal (handler modules import this one, hence the late import)."""
    from portal_lite import mytickets, ratings, tickets

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/t/{token}", tickets.ticket_page, methods=["GET", "POST"]),
        Route("/d/{token}", download, methods=["GET"]),
        Route("/csat/{token}", ratings.rating_page, methods=["GET", "POST"]),
        Route("/my", mytickets.request_link, methods=["GET", "POST"]),
        Route("/my/{token}", mytickets.my_tickets, methods=["GET"]),
        Route("/my/{token}/reopen", mytickets.reopen, methods=["POST"]),
        Route("/my/{token}/watchers", mytickets.watchers, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(static_dir)), name="static"),
    ]
