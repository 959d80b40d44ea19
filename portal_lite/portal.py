"""The per-app :class:`Portal` every handler reaches: rendering, link checks, POST guards.

Its own module so that the handler modules (``tickets.py``, ``ratings.py``,
``mytickets.py``) and the route table in ``routes.py`` that imports them share it without
importing each other. Handlers find the app's instance with :func:`portal_of`
(``request.app.state.portal``: no module-level state) and refuse with
:class:`PortalError`, which ``routes.py`` renders as a page.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from itsdangerous import BadData
from itsdangerous.encoding import base64_decode
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse

from helpdesk.config import Settings
from helpdesk.links import (
    MAX_TOKEN_LENGTH,
    BadLink,
    LinkClaims,
    LinkSigner,
    Purpose,
    is_id,
)
from helpdesk.models import Contact, Ticket
from helpdesk.refs import format_ticket_ref
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
        self.signer = signer
        self.csrf = csrf
        self.limiter = limiter
        self.env = Environment(
            loader=FileSystemLoader(str(template_dir)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True, lstrip_blocks=True, auto_reload=False,
        )
        self.env.filters["when"] = _when

    @property
    def settings(self) -> Settings:
        """The runtime's settings as they are now (a reload may have replaced them)."""
        return self.rt.settings

    def reference(self, ticket: Ticket) -> str:
        t = self.settings.tickets
        return format_ticket_ref(ticket.number, t.prefix, t.digits)

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
        if ticket.deleted_at is not None:
            raise PortalError(410, "Ticket deleted",
                              "This ticket has been deleted. Please write to us by email "
                              "if you still need help.")
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
