"""How tickets are tied to each other and to where the work happens: the link vocabulary.

A link is stored once (`helpdesk.models.TicketLink`) and read from both ends: what
ticket A says of B, B says of A in the inverse words. Pure, so `#link` parsing, the CLI
and the views share one set of words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from helpdesk.refs import parse_ticket_ref

TicketLinkKind = Literal["related", "parent", "child", "followup"]
UrlLinkKind = Literal["task", "issue", "incident"]

TICKET_KINDS: tuple[str, ...] = ("related", "parent", "child")
"""What an agent may link a ticket to another ticket as (``followup`` is the system's)."""
URL_KINDS: tuple[str, ...] = ("task", "issue", "incident")
"""What an agent may link a ticket to outside the help desk, by URL."""

_INVERSE = {"related": "related", "parent": "child", "child": "parent",
            "followup": "followed_up_by", "followed_up_by": "followup"}

LABELS = {"related": "related", "parent": "parent", "child": "child",
          "followup": "follow-up of", "followed_up_by": "followed up by",
          "task": "task", "issue": "issue", "incident": "incident"}
"""How a link reads from a ticket: ``parent TKT-000010`` (the other ticket is its parent)."""


def inverse(kind: str) -> str:
    """What a ticket link says from the other end (``parent`` of B is B's ``child``)."""
    return _INVERSE.get(kind, kind)


def is_url_kind(kind: str) -> bool:
    return kind in URL_KINDS


_URL_RE = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)


@dataclass(frozen=True)
class LinkTarget:
    """What ``#link`` / ``helpdesk tickets link`` names: a kind and a ticket or a URL."""

    kind: str
    number: int | None = None
    url: str = ""
    title: str = ""


def parse_link(words: list[str], ticket_prefix: str) -> LinkTarget:
    """``[related|parent|child] TICKET`` or ``task|issue|incident URL [title]`` (pure).

    Raises:
        ValueError: with what is wrong, in words fit to show the agent.
    """
    if not words:
        raise ValueError(f"needs a ticket (e.g. {ticket_prefix}000012) or "
                         "task|issue|incident and a URL")
    kind = words[0].lower()
    if kind in URL_KINDS:
        if len(words) < 2 or not _URL_RE.fullmatch(words[1]):
            raise ValueError(f"{kind} needs an http:// or https:// URL")
        return LinkTarget(kind, url=words[1], title=" ".join(words[2:]))
    if kind in TICKET_KINDS:
        words = words[1:]
    else:
        kind = "related"
    if len(words) != 1:
        raise ValueError(f"needs one ticket number like {ticket_prefix}42")
    number = parse_ticket_ref(words[0], ticket_prefix)
    if number is None:
        shown = words[0] if len(words[0]) <= 60 else words[0][:59] + "…"
        raise ValueError(f'"{shown}" is not a ticket number like {ticket_prefix}42')
    return LinkTarget(kind, number=number)
