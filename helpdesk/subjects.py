"""Subjects both ways: reply and forward prefixes, our ticket tag, the subject we send.

The gateway reads subjects and the composer writes them; both use this module, so a
subject we send, answered by any mail client in any language, reads back as the same
topic with exactly our ticket's token (see ``tests/unit/test_subjects.py``). The reply
and forward words are those of the clients we have seen (English, German, the Nordic
languages, Dutch, Italian, French, Spanish, Portuguese, Polish, Turkish, Chinese,
Japanese), each only when a colon (ASCII or full-width) follows, optionally after a
counter (``Re[2]:``, ``Re(2):``).
"""

from __future__ import annotations

import re

from helpdesk.mailheaders import header_text
from helpdesk.refs import format_ticket_ref, token_pattern

__all__ = [
    "NO_SUBJECT",
    "REPLY_WORDS",
    "SUBJECT_MAX",
    "clean_subject",
    "outbound_subject",
    "shorten",
    "strip_reply_prefixes",
    "topic",
]

REPLY_WORDS = (
    "antwort", "antw", "fwd", "fw", "re", "aw", "wg", "sv", "vs", "rif", "r", "tr", "enc",
    "res", "rv", "doorst", "odp", "ynt", "réf.", "réf", "回复", "回覆", "答复", "転送", "返信",
)  # fmt: skip
"""Reply and forward markers, lower case; matched in any case when a colon follows."""

SUBJECT_MAX = 200
"""Characters of an inbound subject we repeat in ours: a 100 KB subject would make a header
that smarthosts cut (Postfix's header_size_limit) or refuse."""

NO_SUBJECT = "(no subject)"
"""What mail bodies call a ticket whose subject is empty once cleaned."""

_REPLY_PREFIX_RE = re.compile(
    r"\s*(?:" + "|".join(map(re.escape, REPLY_WORDS)) + r")"
    r"\s*(?:\[[0-9]{1,4}\]\s*|\([0-9]{1,4}\)\s*)?[:：]\s*",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """Remove leading reply and forward markers, repeated, in any language and case.

    ``Re:``, ``RE :``, ``Re[2]:``, ``AW: WG:``, ``回复：`` (full-width colon) and the like are
    removed from the start until none is left; the result is stripped of surrounding
    whitespace. Mailing-list tags such as ``[list]`` are kept: they are part of the subject
    the sender chose. Idempotent.
    """
    text = subject.strip()
    start = 0  # advance an index rather than re-slice: "Re: " * 10**6 stays linear
    while match := _REPLY_PREFIX_RE.match(text, start):
        start = match.end()
    return text[start:].strip()


def clean_subject(subject: str, prefix: str = "TKT-") -> str:
    """The topic of a subject: one line, no reply prefixes, none of our ticket tokens.

    Control characters and line breaks become spaces and whitespace collapses (see
    :func:`helpdesk.mailheaders.header_text`); leading reply and forward prefixes go, and
    so does every token of ours, bracketed (``[TKT-000042]``) or bare (``TKT-7``): the
    subject we send names one ticket, at its start. Repeated until nothing changes, so
    ``[TKT-1] Re: [TKT-1] AW: x`` is ``x``. Idempotent; empty when nothing is left.

    Args:
        subject: the decoded subject.
        prefix: the configured ticket prefix; empty removes no tokens.
    """
    text = header_text(subject)
    tokens = (token_pattern(prefix, bracketed=True), token_pattern(prefix)) if prefix else ()
    while True:
        stripped = strip_reply_prefixes(text)
        for pattern in tokens:
            stripped = " ".join(pattern.sub(" ", stripped).split())
        if stripped == text:
            return text
        text = stripped


def shorten(text: str, limit: int = SUBJECT_MAX) -> str:
    """``text`` as one clean header line, cut to ``limit`` characters with an ellipsis."""
    line = header_text(text)
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "\u2026"


def topic(subject: str, prefix: str = "TKT-", limit: int = SUBJECT_MAX) -> str:
    """:func:`clean_subject`, at most ``limit`` characters: what our subjects repeat."""
    text = clean_subject(subject, prefix)
    while len(text) > limit:  # a cut can end a word in a token: "TKT-12abc" -> "TKT-12…"
        text = clean_subject(shorten(text, limit), prefix)
    return text


def outbound_subject(number: int, subject: str, prefix: str = "TKT-", digits: int = 6,
                     limit: int = SUBJECT_MAX) -> str:
    """The subject of a mail we send about a ticket: ``[TKT-000042] topic``.

    The topic is :func:`topic` of ``subject``, so the tag is never doubled however often
    the subject goes round, and the result is always one safe header line; ``[TKT-000042]``
    alone when nothing is left.

    Raises:
        ValueError: as :func:`helpdesk.refs.format_ticket_ref`.
    """
    ref = format_ticket_ref(number, prefix, digits)
    text = topic(subject, prefix, limit)
    return f"[{ref}] {text}" if text else f"[{ref}]"
