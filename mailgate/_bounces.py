"""Ask flufl.bounce, Mailman's bounce detector, which recipients a non-RFC 3464 bounce names.

Our own rules (``mailgate.classify``) read delivery-status reports and the common signs of
a bounce; MTAs that send neither (Exchange's "did not reach the following recipient(s)",
qmail's QSBMF, Exim, Postfix without a DSN, dozens of older ones) are recognised by
flufl.bounce's detectors, maintained with Mailman. It reads an ``email.message.Message``:
the one the gateway parsed, when given, so that detectors of a MIME layout see it; else
one rebuilt from the parsed mail's headers and text, which the line-based detectors need
and nothing more. A detector that fails on odd input means "no answer", never an error.
"""

from __future__ import annotations

import logging
from email.message import Message

from mailgate.parse import Inbound

_HEADERS = ("from", "to", "subject", "date", "x-mailer", "x-failed-recipients")


def as_message(msg: Inbound) -> Message:
    """A plain-text ``Message`` with ``msg``'s detector-relevant headers and its text."""
    out = Message()
    for name in _HEADERS:
        value = msg.headers.get(name)
        if value:
            out[name] = value
    out.set_type("text/plain")
    out.set_payload(msg.text)
    return out


def failures(msg: Inbound, mime: Message | None = None) -> tuple[frozenset[str], bool]:
    """(permanently failed recipients, lowercased; whether any failure was reported at all).

    A report of temporary failures only (a delay warning) is a bounce too, but names no
    recipient to stop mailing.
    """
    # Imported here: its detectors cost ~30 ms to import, paid only for machine-made mail
    # (`helpdesk ingest` runs once per mail). It logs every detector it runs at INFO and a
    # detector's exception with its traceback: neither is news, the mail is classified.
    from flufl.bounce import all_failures

    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    try:
        temporary, permanent = all_failures(mime if mime is not None else as_message(msg))
    except Exception:  # a detector tripping on odd input is "no answer"
        return frozenset(), False
    found = {a.decode("ascii", "replace").strip().strip("<>").lower() for a in permanent}
    return frozenset(a for a in found if "@" in a), bool(temporary or permanent)
