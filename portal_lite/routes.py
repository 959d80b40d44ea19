"""The portal's URLs and its error pages: the route table and the one error table.

Handlers live in ``tickets.py``, ``ratings.py`` and ``mytickets.py`` (imported here; they
import only :mod:`portal_lite.portal`, never this module); the health check and downloads
live here. Every refusal becomes a page here, once: a bad link 403, an expired or revoked
one 410 (both with a form to ask for fresh links), a failed guard 400/403/429, anything
unexpected 500, and never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from helpdesk.errors import DomainError
from helpdesk.filenames import clean_filename
from helpdesk.links import LinkError, LinkExpired, Purpose, is_id
from helpdesk.models import Attachment, Message
from portal_lite import mytickets, ratings, tickets
from portal_lite.portal import PortalError, log, portal_of

INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Attachment types shown inline; everything else (SVG included) downloads as octet-stream."""


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
    """A Content-Disposition header with an ASCII fallback and the RFC 6266 UTF-8 name.

    The name is cleaned as every stored name is (:func:`helpdesk.filenames.clean_filename`)
    and loses its quotes and backslashes, which would end the quoted fallback early.
    """
    cleaned = "".join(c for c in clean_filename(filename) if c not in '"\\') or "file"
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
    """Every URL of the portal."""
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
