"""Name the real cause of a failure to store mail in a few words an operator can act on.

A temporary failure is answered 451 / exit 75 whatever it is, but "database busy" for a
read-only or corrupt database sends the admin the wrong way. The cause is read from the
exception chain, innermost first, because the outer exceptions are our own wrappers
("database busy, retry later") around the driver's error.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

LOCKED = "database is locked"
READ_ONLY = ("database is read-only (the user needs write access to the database file, "
             "its -wal and -shm files and their directory)")
CANNOT_OPEN = "database cannot be opened (missing directory or no permission)"
CORRUPT = "database is corrupt"
NOT_INITIALISED = "database is not initialised (run `helpdesk init`)"
UNREACHABLE = "database server unreachable"
DISK_FULL = "disk full"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and the DB-API errors SQLAlchemy wraps, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            seen.add(id(orig))
            yield orig
        current = current.__cause__ or current.__context__


def _cause_of(exc: BaseException) -> str | None:
    text = str(exc).lower()
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}" if exc.filename else "permission denied"
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) \
            or "database or disk is full" in text:
        return DISK_FULL
    if isinstance(exc, FileNotFoundError):
        return f"missing: {exc.filename}" if exc.filename else "file missing"
    if isinstance(exc, ConnectionError) or "connection refused" in text \
            or "could not connect" in text:
        return UNREACHABLE
    if "readonly database" in text or "read-only" in text:
        return READ_ONLY
    if "unable to open database file" in text:
        return CANNOT_OPEN
    if "malformed" in text or "file is not a database" in text or "file is encrypted" in text:
        return CORRUPT
    if "no such table" in text:
        return NOT_INITIALISED
    if "database is locked" in text or "database table is locked" in text:
        return LOCKED
    return None


def describe_failure(exc: BaseException) -> str:
    """The cause of ``exc`` in a few words ("database is read-only (...)"), never a trace.

    Falls back to ``internal error (TypeName)``, the innermost exception's type, for what
    it does not recognise; the detail is for the log.
    """
    links = list(_chain(exc))
    for link in reversed(links):
        cause = _cause_of(link)
        if cause is not None:
            return cause
    if any("busy" in str(link).lower() for link in links):
        return LOCKED
    return f"internal error ({type(links[-1]).__name__})"
