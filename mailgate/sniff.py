"""Is this input mail at all? The one test the MTA pipe makes before anything is loaded.

Its own small module because the pipe asks it first, before it decides whether to hand
the mail over to the daemon or to load the whole pipeline itself.
"""

from __future__ import annotations

import re

_HEADER_LINE = re.compile(rb"(?m)^[\x21-\x39\x3b-\x7e]{1,76}[ \t]*:")
_BINARY = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"


def looks_like_mail(raw: bytes) -> bool:
    """Return False only for input that is clearly not mail: empty, or binary without headers.

    Binary: a NUL or more than 5 % control bytes in the first 8 KiB. A header line there
    makes it mail whatever else it holds (a stray NUL in real mail is mail), and so does
    text without headers: it is kept and becomes a ticket.
    """
    head = raw[:8192]
    if not head.strip():
        return bool(raw.strip())
    if _HEADER_LINE.search(head):
        return True
    controls = len(head) - len(head.translate(None, _BINARY))
    return b"\x00" not in head and controls * 20 <= len(head)
