"""Find one's way around a parsed mail's MIME tree: its parts, types and declared charsets.

Why a module of its own: ``parse`` uses the standard library's ``compat32`` parser for
speed, and ``compat32`` messages have no ``get_body`` or ``iter_parts``. These functions
(and ``_bodies``, which picks the content among them) are that navigation, bounded (at
most ``_MAX_PARTS`` parts, ``_MAX_DEPTH`` levels) so a hostile or broken mail cannot
make it run away, and tolerant of malformed headers.
"""

from __future__ import annotations

import contextlib
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


def fallback_text(part: Message) -> bool:
    """Whether ``part`` may serve as the text when there is neither text/plain nor HTML."""
    return ctype(part).startswith("text/") and _is_bare_text(part)


def _is_bare_text(part: Message) -> bool:
    return disposition(part) != "attachment" and _headers.part_filename(part) is None


class DeclaredCharsets:
    """The charsets a mail declares, its own first: read on first use, then kept.

    Only mail with bytes its labels do not read needs them (raw 8-bit headers and
    filenames, mislabelled bodies), so most parses never walk the parts for them.
    """

    def __init__(self, walked: Walked) -> None:
        self._walked = walked
        self._found: tuple[str, ...] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._found is None:
            names: dict[str, None] = {}
            for part, _ in self._walked:
                with contextlib.suppress(Exception):  # a malformed Content-Type
                    charset = part.get_param("charset")
                    if isinstance(charset, str) and charset.isascii() and charset.strip():
                        names.setdefault(charset.strip().lower())
            self._found = tuple(names)
        return iter(self._found)
