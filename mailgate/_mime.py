"""Find one's way around a parsed mail's MIME tree: its parts, and which of them is the body.

Why a module of its own: ``parse`` uses the standard library's ``compat32`` parser for
speed, and ``compat32`` messages have no ``get_body`` or ``iter_parts``. These functions
are that navigation, bounded (at most ``_MAX_PARTS`` parts, ``_MAX_DEPTH`` levels) so a
hostile or broken mail cannot make it run away, and tolerant of malformed headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message

from mailgate import _headers

_MAX_PARTS = 1000
_MAX_DEPTH = 50
REPORT_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "message/feedback-report"}
)
Walked = list[tuple[Message, "Message | None"]]  # (part, parent), depth first


_CTYPE = "_helpdesk_ctype"  # kept on the part: a parse asks each part several times


def ctype(part: Message) -> str:
    """The part's lowercased ``type/subtype``; ``application/octet-stream`` if unreadable.

    Remembered on the part (parts are not changed after parsing): the body search, the
    attachment scan and the classifier's part list ask for it about five times a part,
    and each answer re-reads and re-parses the Content-Type header.
    """
    known: str | None = getattr(part, _CTYPE, None)
    if known is None:
        try:
            known = part.get_content_type()
        except Exception:
            known = "application/octet-stream"
        setattr(part, _CTYPE, known)
    return known


def children(part: Message) -> list[Message] | None:
    """The sub-parts of a multipart (or message/*) part; None for a leaf.

    Not ``get_payload()``: for a leaf with raw 8-bit bytes it re-decodes the body with
    the declared charset and raises on one such as ``idna`` (only LookupError is caught).
    """
    if not part.is_multipart():
        return None
    return [c for c in part.get_payload() if isinstance(c, Message)]


def body_text(part: Message) -> str:
    """A leaf's body as parsed (raw 8-bit bytes surrogate-escaped); "" for a multipart."""
    payload = getattr(part, "_payload", None)  # what get_payload() starts from, unconverted
    return payload if isinstance(payload, str) else ""


def disposition(part: Message) -> str:
    """The part's Content-Disposition value (``inline``, ``attachment``), or ""."""
    value = part.get("content-disposition")
    return str(value).split(";", 1)[0].strip().lower() if value is not None else ""


def walk(msg: Message) -> Walked:
    """Every part, depth first, with its parent; DSN field blocks are not parts."""
    out: Walked = []
    stack: list[tuple[Message, Message | None, int]] = [(msg, None, 0)]
    while stack and len(out) < _MAX_PARTS:
        part, parent, depth = stack.pop()
        out.append((part, parent))
        payload = children(part)
        if payload is not None and depth < _MAX_DEPTH and ctype(part) not in REPORT_TYPES:
            stack.extend((c, part, depth + 1) for c in reversed(payload))
    return out


def best_body(msg: Message, subtype: str) -> Message | None:
    """The first ``text/<subtype>`` part ``EmailMessage.get_body`` would choose, or None."""
    return next(_find_body(msg, subtype), None)


def text_parts(plain: Message | None, walked: Walked) -> list[Message]:
    """The chosen text/plain part plus later inline text siblings (Apple Mail splits text)."""
    if plain is None:
        return []
    parent = next((p for c, p in walked if c is plain), None)
    if parent is None or ctype(parent) != "multipart/mixed":
        return [plain]
    siblings = children(parent) or []
    later = siblings[siblings.index(plain) + 1 :] if plain in siblings else []
    return [plain] + [c for c in later if ctype(c) == "text/plain" and _is_bare_text(c)]


def fallback_text(part: Message) -> bool:
    """Whether ``part`` may serve as the text when there is neither text/plain nor HTML."""
    return ctype(part).startswith("text/") and _is_bare_text(part)


def _find_body(part: Message, subtype: str, depth: int = 0) -> Iterator[Message]:
    """The body search of ``EmailMessage.get_body``, on ``compat32`` parts."""
    if depth > _MAX_DEPTH or disposition(part) == "attachment":
        return
    maintype, _, sub = ctype(part).partition("/")
    if maintype == "text":
        if sub == subtype:
            yield part
        return
    found = children(part)
    if maintype != "multipart" or found is None:
        return
    if sub == "related" and found:
        start = part.get_param("start")
        match = [c for c in found if start and c.get("content-id") == start]
        found = match[:1] or found[:1]
    for child in found:
        yield from _find_body(child, subtype, depth + 1)


def _is_bare_text(part: Message) -> bool:
    return disposition(part) != "attachment" and _headers.part_filename(part) is None
