"""Recover a broken header block the way mail clients do, before the MIME parser reads it.

Why: the standard library's parser ends the header block at the first line that is not a
header, so one stray line loses every header after it (From, Subject, Message-ID, Date)
and turns them into body text. Clients are kinder, and so is this: a few non-header
lines before the first header are skipped (``---- Original email message ----`` written
by a forwarding client), an unindented line between two headers is a continuation of
the header before it (an encoded word or a ``Received`` clause wrapped without its
indent), and ``Name :`` (obsolete RFC 822 syntax) is a header. The raw message is never
changed: the parser reads a repaired copy, only when a repair is needed.
"""

from __future__ import annotations

import re

_MAX_SKIPPED = 3  # leading lines skipped at most: more is text, not a stray line
_SCAN = 64 << 10  # a header block longer than this is read as it is
_HEADER = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_OBSOLETE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_KNOWN = re.compile(
    rb"(?i)(from|to|cc|subject|date|message-id|received|return-path|mime-version"
    rb"|content-type|reply-to|sender|delivered-to|x-[\x21-\x39\x3b-\x7e]*)[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def recover(data: bytes) -> bytes | None:
    """``data`` with its header block repaired, or None when it needs no repair.

    Args:
        data: The message, without leading blank lines and mbox ``From `` line.

    Returns:
        A repaired copy for the parser (the body after the block is unchanged), or None.
    """
    end = _head_end(data)
    lines = data[:end].split(b"\n")
    if all(_is_header(line) or line[:1] in b" \t" for line in lines if line):
        return None  # the common case: one pass, no copy
    skip = 0
    while skip < len(lines) and not _is_header(lines[skip]) and not _OBSOLETE.match(
            lines[skip]):
        skip += 1
    if skip > _MAX_SKIPPED or skip == len(lines) or (skip and not _KNOWN.match(lines[skip])):
        skip = 0  # text, not a stray line before headers: as the parser reads it
    fixed = lines[skip:]
    # Continuations only up to the last well-known header: a body that follows the
    # headers without its blank line ("Regards,", "Phone: 123") stays body.
    last_known = max((i for i, line in enumerate(fixed) if _KNOWN.match(line)), default=-1)
    changed = bool(skip)
    for i, line in enumerate(fixed):
        if not line or line[:1] in b" \t" or _is_header(line) or i > last_known:
            continue
        obsolete = _OBSOLETE.match(line)
        if obsolete:
            fixed[i] = obsolete.group(1) + b":" + line[obsolete.end():]
        elif i:
            fixed[i] = b" " + line
        else:
            continue
        changed = True
    if not changed:
        return None
    return b"\n".join(fixed) + data[end:]


def _head_end(data: bytes) -> int:
    """Where the header block ends: its blank line; 0 when none within ``_SCAN`` bytes."""
    match = _BLANK_LINE.search(data, 0, _SCAN)
    if match is None:
        return 0 if len(data) > _SCAN else len(data)
    return match.start()


def _is_header(line: bytes) -> bool:
    return _HEADER.match(line) is not None
