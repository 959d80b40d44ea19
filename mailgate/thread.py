"""Decide which ticket an inbound message belongs to, from facts already looked up.

Besides :func:`decide_thread`, the module holds the pure helpers threading needs for
Message-IDs and References. Ticket tokens in subjects and reply prefixes are read by the
core's mail vocabulary (:mod:`helpdesk.refs`, :mod:`helpdesk.subjects`), which writes our
outbound subjects too.

Trust order (see DESIGN.md, "Threading trusts"):

0. an authenticated agent's own signed reply address (``agent_address``): its HMAC binds
   one ticket, so the agent's commands act on that ticket whatever In-Reply-To says;
   then a reply to a staff-only notice (its internal Message-ID in In-Reply-To, or its
   internal reply address), which is filed as an internal note (``internal_notice``);
1. our own Message-ID in In-Reply-To/References whose HMAC verified (``signed_ref``);
2. a verified signed plus-address recipient, ``support+<token>@`` (``plus_address``);
3. a Message-ID we received or sent for a ticket (``message_id``), and then
4. a ticket token in the subject (``subject``),

where 3 and 4 count only when the sender already takes part in that ticket or is an agent,
because anyone can copy a subject or a Message-ID. Anything else opens a new ticket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from helpdesk.refs import format_ticket_ref

__all__ = [
    "ThreadDecision",
    "ThreadFacts",
    "decide_thread",
    "normalise_message_id",
    "split_references",
]

MAX_MESSAGE_ID_CHARS = 998  # RFC 5322 line limit

_ANGLE_RE = re.compile(r"<([^<>]*)>")
_ID_CHARS_RE = re.compile(r"[^\s<>()\x00-\x1f\x7f]+")


def _clean_id(inner: str) -> str | None:
    inner = inner.strip()
    if not inner or len(inner) > MAX_MESSAGE_ID_CHARS - 2:
        return None
    if not _ID_CHARS_RE.fullmatch(inner):
        return None
    return f"<{inner}>"


def _without_comments(value: str) -> str:
    """Drop RFC 5322 comments, nested ones too, in one pass; an unclosed one runs to the end."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth = 0
    for ch in value:
        if ch == "(":
            if not depth:
                out.append(" ")  # a comment separates what stands either side of it
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def normalise_message_id(value: str) -> str | None:
    """Bring a Message-ID header value to its ``<id>`` form, for storing and comparing.

    Comments and surrounding whitespace go; case is kept, because the part
    left of the ``@`` is case-sensitive. The first ``<...>`` wins; a value without angle
    brackets is accepted only when it is one ``local@domain`` word.

    Returns:
        ``"<id>"``, or None when no usable id is present (empty, whitespace or control
        characters inside, over 998 characters).
    """
    text = _without_comments(value)
    match = _ANGLE_RE.search(text)
    if match:
        return _clean_id(match.group(1))
    bare = text.strip()
    if "@" not in bare or "<" in bare or ">" in bare:
        return None
    return _clean_id(bare)


def split_references(header_value: str) -> tuple[str, ...]:
    """List the Message-IDs in a References or In-Reply-To value, in order, each once.

    Ids are normalised as :func:`normalise_message_id` does and unusable ones dropped.
    Comments are removed first, so an old-style ``In-Reply-To: <id@host> (message from
    John <john@example.com>)`` yields no address as an id. When the value has
    no angle brackets at all, whitespace- or comma-separated ``local@domain`` words count.
    """
    text = _without_comments(header_value)
    candidates: Iterable[str]
    if "<" in text:
        candidates = (f"<{inner}>" for inner in _ANGLE_RE.findall(text))
    else:
        candidates = re.split(r"[\s,]+", text)
    found: dict[str, None] = {}
    for candidate in candidates:
        normalised = normalise_message_id(candidate)
        if normalised is not None:
            found.setdefault(normalised)
    return tuple(found)


_NOT_PARTICIPANT = "sender is not a participant"

Via = Literal["agent_address", "internal_notice", "signed_ref", "plus_address", "message_id",
              "subject", "new"]


@dataclass(frozen=True)
class ThreadFacts:
    """What the pipeline learnt about an inbound message before deciding its ticket.

    Attributes:
        signed_ref_ticket: ticket from one of our Message-IDs in In-Reply-To/References
            whose HMAC verified.
        plus_address_ticket: ticket from a verified signed plus-address recipient.
        known_message_ticket: ticket whose received or sent Message-ID appears in
            In-Reply-To/References (looked up, not verified).
        subject_tickets: ticket tokens in the subject that name existing tickets, in order.
        sender_participates: tickets the sender takes part in (requester, watcher, CC,
            organization member).
        sender_is_agent: the sender is a known agent, who may thread onto any ticket.
        agent_address_ticket: ticket of the agent's own signed reply address, when that
            address is what authenticated the agent.
        internal_notice_ticket: ticket of a staff-only notice this mail answers (verified
            internal Message-ID in In-Reply-To, or internal reply address).
    """

    signed_ref_ticket: int | None = None
    plus_address_ticket: int | None = None
    known_message_ticket: int | None = None
    subject_tickets: tuple[int, ...] = ()
    sender_participates: frozenset[int] = frozenset()
    sender_is_agent: bool = False
    agent_address_ticket: int | None = None
    internal_notice_ticket: int | None = None


@dataclass(frozen=True)
class ThreadDecision:
    """Where the message goes and why; ``ticket`` is None exactly when ``via`` is "new".

    ``internal``: the mail answers a staff-only notice and is filed as an internal note.
    """

    ticket: int | None
    via: Via
    reason: str
    internal: bool = False


def decide_thread(f: ThreadFacts, *, prefix: str = "TKT-", digits: int = 6) -> ThreadDecision:
    """Pick the ticket an inbound message threads onto, or decide to open a new one.

    Args:
        f: the facts, each already verified or looked up by the caller.
        prefix: ticket prefix, for the references written into ``reason``.
        digits: ticket number width, likewise.

    Returns:
        The decision; its ``reason`` is one line for the audit log, naming what was used
        and what was ignored and why.
    """

    def ref(number: int) -> str:
        return format_ticket_ref(number, prefix, digits) if number >= 0 else str(number)

    def may_join(number: int) -> bool:
        return f.sender_is_agent or number in f.sender_participates

    who = "agent" if f.sender_is_agent else "participant"
    others = [n for n in (f.signed_ref_ticket, f.plus_address_ticket) if n is not None]
    bound = f.agent_address_ticket
    if bound is not None:
        reason = f"agent's signed reply address for {ref(bound)}"
        overruled = sorted({ref(n) for n in others if n != bound})
        if overruled:
            reason += "; references to " + ", ".join(overruled) + " overruled"
        internal = f.internal_notice_ticket == bound
        return ThreadDecision(bound, "agent_address", reason, internal=internal)
    if f.internal_notice_ticket is not None:
        reason = f"reply to a staff-only notice about {ref(f.internal_notice_ticket)}"
        return ThreadDecision(f.internal_notice_ticket, "internal_notice", reason,
                              internal=True)
    if f.signed_ref_ticket is not None:
        reason = f"signed Message-ID reference to {ref(f.signed_ref_ticket)}"
        plus = f.plus_address_ticket
        if plus is not None and plus != f.signed_ref_ticket:
            reason += f"; plus-address for {ref(plus)} overruled"
        return ThreadDecision(f.signed_ref_ticket, "signed_ref", reason)
    if f.plus_address_ticket is not None:
        reason = f"signed plus-address for {ref(f.plus_address_ticket)}"
        return ThreadDecision(f.plus_address_ticket, "plus_address", reason)
    ignored: list[str] = []
    known = f.known_message_ticket
    if known is not None:
        if may_join(known):
            reason = f"known Message-ID reference to {ref(known)}, sender is {who}"
            return ThreadDecision(known, "message_id", reason)
        ignored.append(f"Message-ID reference to {ref(known)} ignored: {_NOT_PARTICIPANT}")
    for number in f.subject_tickets:
        if may_join(number):
            reason = f"subject token {ref(number)}, sender is {who}"
            if ignored:
                reason += "; " + "; ".join(ignored)
            return ThreadDecision(number, "subject", reason)
        ignored.append(f"subject token {ref(number)} ignored: {_NOT_PARTICIPANT}")
    reason = "; ".join(ignored) if ignored else "no thread reference"
    return ThreadDecision(None, "new", f"new ticket: {reason}")
