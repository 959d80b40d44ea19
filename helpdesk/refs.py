"""Ticket references (``TKT-000042``): written and read by one implementation.

Mail we send, the CLI, the portal, the SLA alerts and the gateway's threading all agree on
what a reference is because they all come here: :func:`format_ticket_ref` writes one,
:func:`find_ticket_numbers` finds every one in a subject (inbound threading),
:func:`parse_ticket_ref` reads a value that should be exactly one (a CLI argument, an
agent's ``#merge`` command). Pure functions, no settings object: callers pass the
configured ``[tickets] prefix`` and ``digits``.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "MAX_TICKET_NUMBER",
    "find_ticket_numbers",
    "format_ticket_ref",
    "parse_ticket_ref",
    "token_pattern",
]

MAX_TICKET_NUMBER = 2**63 - 1  # what a BIGINT column holds


@functools.lru_cache(maxsize=16)
def token_pattern(prefix: str, *, bracketed: bool = False) -> re.Pattern[str]:
    """The regex of a reference with ``prefix`` (matched literally, in any case).

    Group 1 holds the digits. Unbracketed, a token is not glued to a longer word on either
    side (``XTKT-1`` and ``TKT-12abc`` are not tokens); bracketed, it is ``[TKT-42]`` with
    optional spaces inside the brackets.
    """
    token = re.escape(prefix) + r"([0-9]+)"
    if bracketed:
        return re.compile(r"\[\s*" + token + r"\s*\]", re.IGNORECASE)
    return re.compile(r"(?<!\w)" + token + r"(?!\w)", re.IGNORECASE)


def _number(digits: str) -> int | None:
    """The ticket number written as ``digits``; None for zero or beyond a BIGINT."""
    significant = digits.lstrip("0")
    if not significant or len(significant) > len(str(MAX_TICKET_NUMBER)):
        return None
    number = int(significant)
    return number if number <= MAX_TICKET_NUMBER else None


def format_ticket_ref(number: int, prefix: str = "TKT-", digits: int = 6) -> str:
    """Write a ticket reference, zero-padded: ``format_ticket_ref(42) == "TKT-000042"``.

    Raises:
        ValueError: when ``number`` is negative or ``digits`` is less than 1.
    """
    if number < 0 or digits < 1:
        raise ValueError(f"bad ticket reference: number={number}, digits={digits}")
    return f"{prefix}{number:0{digits}d}"


def find_ticket_numbers(text: str, prefix: str = "TKT-") -> tuple[int, ...]:
    """Find every ticket token in a subject, e.g. ``[TKT-000042]``, ``TKT-42``, ``tkt-0042``.

    Tokens match anywhere, in any case, with or without leading zeros and brackets, but not
    inside a longer word. Zero and numbers beyond a BIGINT are not tickets and are skipped.

    Args:
        text: the decoded subject.
        prefix: the configured ticket prefix, matched literally; an empty prefix finds none.

    Returns:
        The distinct ticket numbers in order of first appearance.
    """
    if not prefix:
        return ()
    found: dict[int, None] = {}
    for match in token_pattern(prefix).finditer(text):
        number = _number(match.group(1))
        if number is not None:
            found.setdefault(number)
    return tuple(found)


@functools.lru_cache(maxsize=16)
def _whole_ref(prefix: str) -> re.Pattern[str]:
    return re.compile(r"\s*\[?\s*(?:" + re.escape(prefix) + r")?([0-9]+)\s*\]?\s*",
                      re.IGNORECASE)


def parse_ticket_ref(text: str, prefix: str = "TKT-") -> int | None:
    """Read a value that names one ticket: ``TKT-000042``, ``tkt-42``, ``[TKT-42]`` or ``42``.

    The whole value must be the reference (surrounding spaces aside), unlike
    :func:`find_ticket_numbers`, which searches a subject.

    Returns:
        The ticket number, or None when the value is not one reference, or names zero or a
        number beyond a BIGINT.
    """
    match = _whole_ref(prefix).fullmatch(text)
    return _number(match.group(1)) if match else None
