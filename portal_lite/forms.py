"""Form fields as values every backend stores: ids in range, text without NULs, addresses.

A form is untrusted input that goes straight into queries and rows. What passes the
browser's own checks is not enough: a superscript digit satisfies ``str.isdigit`` and then
fails in ``int``; twenty digits overflow SQLite's and PostgreSQL's integers; PostgreSQL
refuses a NUL in text. Each failed in the driver and answered 500; here each becomes a
value or None, and the handler answers 4xx.
"""

from __future__ import annotations

import re

from helpdesk.directory import normalise_email
from helpdesk.links import is_id

MAX_ADDRESS = 320
"""The longest email address we take from a form (RFC 3696 errata: 64 + 1 + 255)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def form_id(value: object) -> int | None:
    """A database id from a form field: ASCII digits only, in range, else None."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() \
            or len(value) > 10:
        return None
    number = int(value)
    return number if is_id(number) else None


def form_text(value: object) -> str:
    """A text field, NULs dropped and lone surrogates U+FFFD; "" for a file or nothing."""
    if not isinstance(value, str):
        return ""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", value)


def form_address(value: object) -> str | None:
    """An email address field, normalised; None when it cannot be an address.

    Refused rather than repaired: an address with a control character in it is not one
    somebody meant, and a repaired one could name somebody else.
    """
    if not isinstance(value, str):
        return None
    email = normalise_email(value)
    local, _, domain = email.rpartition("@")
    if len(email) > MAX_ADDRESS or not local or not domain or " " in email \
            or not email.isprintable():
        return None
    return email
