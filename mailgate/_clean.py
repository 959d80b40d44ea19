"""Make a parsed mail's text safe for every later writer: valid, NUL-free, within limits.

Why a module of its own: it is the one place the parse step's promise is kept, after all
the decoders have run. PostgreSQL refuses NUL in text, every database driver refuses a
lone surrogate (UTF-7 ``+2AA-`` and escaped bytes decode to them), and columns have
lengths; values longer than mail allows (RFC 5321/5322/6838) are dropped or cut here,
so a mail is stored rather than quarantined.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mailgate._headers import Address, clean

if TYPE_CHECKING:
    from mailgate.parse import Inbound

MAX_ID_CHARS = 998  # a message or content id: one whole header line
MAX_ADDRESS_CHARS = 254  # an addr-spec in a SMTP path; a longer one is unusable ("")
MAX_NAME_CHARS = 255  # a display name is cut to this
MAX_TYPE_CHARS = 255  # type "/" subtype, each at most 127


def message_id(value: str | None) -> str | None:
    """A cleaned message or content id; None when absent or longer than a header line."""
    value = clean(value) if value else None
    return value if value and len(value) <= MAX_ID_CHARS else None


def cleaned(inbound: Inbound) -> Inbound:
    """``inbound`` with every text in it `clean`: no lone surrogate, no NUL.

    The one place that guarantees what every later writer relies on (PostgreSQL and the
    database drivers refuse such text); the decoders clean what they make, and this
    catches what comes from elsewhere (a surrogate-escaped byte in a content type).
    ``headers`` are clean as made (`mailgate._headers.HeaderMap`, or the parse's undecoded
    fallback) and left as they are, so that they stay decoded on demand.
    """
    c = clean

    def address(a: Address | None) -> Address | None:
        return None if a is None else one_address(a)

    def one_address(a: Address) -> Address:
        email = c(a.email)
        return Address(email=email if len(email) <= MAX_ADDRESS_CHARS else "",
                       name=c(a.name)[:MAX_NAME_CHARS].rstrip())

    def addresses(values: tuple[Address, ...]) -> tuple[Address, ...]:
        return tuple(map(one_address, values))

    def ids(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(i for i in map(message_id, values) if i)

    def mime_type(value: str) -> str:
        value = c(value)
        return value if len(value) <= MAX_TYPE_CHARS else "application/octet-stream"

    return replace(
        inbound,
        message_id=message_id(inbound.message_id),
        in_reply_to=ids(inbound.in_reply_to),
        references=ids(inbound.references),
        sender=address(inbound.sender), reply_to=addresses(inbound.reply_to),
        to=addresses(inbound.to), cc=addresses(inbound.cc), subject=c(inbound.subject),
        text=c(inbound.text), html=c(inbound.html) if inbound.html else inbound.html,
        attachments=tuple(
            replace(a, filename=c(a.filename), content_type=mime_type(a.content_type),
                    content_id=message_id(a.content_id))
            for a in inbound.attachments),
        defects=tuple(map(c, inbound.defects)), content_type=mime_type(inbound.content_type),
        part_types=tuple(map(mime_type, inbound.part_types)),
        delivery_status=c(inbound.delivery_status),
    )
