"""Compute the idempotency key of a raw inbound message (ingest step 2, "Deduplicate").

Why a module of its own: the key is a pure function of the bytes, read without a full
parse, and its contract (which headers count, how line endings and blanks are folded,
chunked hashing of large bodies) is easier to hold and property-test apart from the
pipeline that stores it.
"""

from __future__ import annotations

import hashlib
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

CHUNK = 1 << 20  # the body is hashed in pieces this big
_MBOX_FROM = re.compile(rb"\AFrom [^\r\n]*\r?\n")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END_BLANKS = re.compile(rb"[ \t\r]+\n")


def dedupe_key(raw: bytes, *, chunk: int = CHUNK,
               headers: Message | None = None) -> tuple[str, str | None]:
    """The idempotency key of a raw message and its Message-ID (None when absent).

    Computed from the header block and body bytes only (no full parse), so it is cheap
    and identical for the same mail arriving by different transports (trace headers such
    as Received differ and are left out, line endings and trailing blanks are folded).
    The body is hashed in chunks of ``chunk`` bytes, so a 25 MB message costs no extra
    25 MB copies; the key does not depend on the chunk size. ``headers``: the mail already
    parsed with ``compat32`` from its first byte (`mailgate.parse.parse_keyed`), whose
    header lines are the ones read here, so they are not parsed a second time.
    """
    mbox = _MBOX_FROM.match(raw)
    start = mbox.end() if mbox else 0
    blank = _BLANK_LINE.search(raw, start)
    head_end, body_start = (blank.start(), blank.end()) if blank else (len(raw), len(raw))
    if headers is None:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[start:head_end] + b"\n\n")
    mid = (str(headers.get("Message-ID", "")) or "").strip()
    norm_mid = mid if mid.startswith("<") and mid.endswith(">") and "@" in mid else None
    fp = hashlib.sha256()
    for name in ("From", "Date", "Subject"):
        fp.update(" ".join(str(headers.get(name, "")).split()).encode("utf-8", "replace"))
        fp.update(b"\0")
    _hash_body(fp, memoryview(raw)[body_start:], chunk)
    key = ("m:" + hashlib.sha256(norm_mid.encode()).hexdigest()[:32] + ":" if norm_mid else "n:")
    return key + fp.hexdigest()[:64], norm_mid


def _hash_body(fp: Any, body: memoryview, size: int) -> None:
    """Feed ``fp`` the body without leading blanks, line-end blanks or trailing blanks."""
    carry = b""
    started = False
    for offset in range(0, len(body), size):
        chunk = carry + bytes(body[offset:offset + size])
        if not started:
            chunk = chunk.lstrip(b" \t\r\n")
            started = bool(chunk)
        stripped = chunk.rstrip(b" \t\r\n")
        carry = chunk[len(stripped):]
        fp.update(_LINE_END_BLANKS.sub(b"\n", stripped))
