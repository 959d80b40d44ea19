"""``/csat/{token}``: rate the resolution 1 to 5 with an optional comment, one rating a ticket.

GET never records anything: mail scanners fetch every link in a message, so the one-click
score links of the resolution mail (``?score=N``) only pre-select the score on a
confirmation page with the comment box. POST records the rating, or updates the ticket's
one rating (``csat_ratings.ticket_id`` is unique) for as long as the link is valid, and
writes an audit event either way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from helpdesk.links import CSAT_SCORES, Purpose
from helpdesk.models import Contact, CsatRating, Ticket
from helpdesk.tickets import TicketService
from portal_lite.forms import form_text
from portal_lite.portal import Portal, PortalError, portal_of
from portal_lite.security import token_scope

MAX_COMMENT_CHARS = 5_000


def parse_score(value: object) -> int | None:
    """A score in 1..5 from a form or query value, else None.

    One ASCII digit: ``str.isdigit`` alone lets ``"²"`` through to ``int`` (which raises)
    and thousands of digits past Python's int-parsing limit.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) != 1 or not text.isascii() or not text.isdigit():
        return None
    score = int(text)
    return score if score in CSAT_SCORES else None


async def rating_page(request: Request) -> Response:
    """GET: the rating form (pre-filled); POST: record or update the rating, then 303."""
    portal = portal_of(request)
    token: str = request.path_params["token"]
    if request.method == "POST":
        return await _rate(portal, request, token)
    async with portal.rt.read_sessions() as session:
        _claims, ticket, _contact = await portal.verify(session, token, Purpose.RATE)
        rating = await _rating_of(session, ticket)
    score = parse_score(request.query_params.get("score"))
    context = _context(portal, ticket, rating, score=score)
    context["saved"] = request.query_params.get("saved") == "1"
    context["chosen"] = score  # the score picked in the mail: the page asks to confirm it
    return portal.render(request, "csat.html", context, scope=token_scope(token))


def _context(portal: Portal, ticket: Ticket, rating: CsatRating | None, *,
             score: int | None = None, comment: str | None = None,
             error: str | None = None) -> dict[str, Any]:
    return {
        "reference": portal.reference(ticket),
        "subject": ticket.subject,
        "scores": list(CSAT_SCORES),
        "selected": score if score is not None else (rating.score if rating else None),
        "comment": comment if comment is not None else (rating.comment if rating else ""),
        "has_rating": rating is not None,
        "error": error,
        "saved": False,
        "chosen": None,
    }


async def _rating_of(session: AsyncSession, ticket: Ticket) -> CsatRating | None:
    return (await session.execute(
        select(CsatRating).where(CsatRating.ticket_id == ticket.id)
    )).scalar_one_or_none()


async def _rate(portal: Portal, request: Request, token: str) -> Response:
    portal.check_rate(request, token)
    async with portal.rt.read_sessions() as session:
        await portal.verify(session, token, Purpose.RATE)
    form = await request.form(max_files=0, max_fields=10)
    portal.check_form(request, form, token_scope(token))
    score = parse_score(form.get("score"))
    comment = form_text(form.get("comment")).replace("\r\n", "\n").strip()
    if score is None or len(comment) > MAX_COMMENT_CHARS:
        async with portal.rt.sessions() as session:
            _claims, ticket, _contact = await portal.verify(session, token, Purpose.RATE)
            rating = await _rating_of(session, ticket)
        error = ("Please choose from 1 to 5 stars." if score is None else
                 f"Your comment is too long (at most {MAX_COMMENT_CHARS:,} characters).")
        return portal.render(request, "csat.html",
                             _context(portal, ticket, rating, score=score, comment=comment,
                                      error=error),
                             status=400, scope=token_scope(token))
    for attempt in (1, 2):
        try:
            async with portal.rt.sessions() as session, session.begin():
                _claims, ticket, contact = await portal.verify(session, token, Purpose.RATE)
                await record_rating(session, portal, ticket, contact, score, comment)
            break
        except IntegrityError:
            # Two first ratings at once: the loser retries and updates the winner's row.
            if attempt == 2:
                raise PortalError(409, "Please try again",
                                  "Your rating could not be saved; please send it again.") from None
    return RedirectResponse(f"/csat/{token}?saved=1", status_code=303)


async def record_rating(session: AsyncSession, portal: Portal, ticket: Ticket, contact: Contact,
                        score: int, comment: str) -> CsatRating:
    """Insert the ticket's rating or update it, through the ticket service, in the caller's txn."""
    return await TicketService.for_runtime(session, portal.rt).rate(ticket, contact, score,
                                                                   comment)
