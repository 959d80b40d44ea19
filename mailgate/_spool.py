"""Claim, settle and read an inbound spool row: the two statements every mail runs.

Why a module of its own: the statements are built once at import (composing one costs
more than running it, ~150 µs against ~25 µs) and run as Core on the session's
connection, so the spool row is never loaded as an object. The unique ``dedupe_key``
column makes `claim` the point where a second delivery of the same mail is recognised.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.db import insert_or_ignore
from helpdesk.direct import connection, run
from helpdesk.models import InboundSpool
from helpdesk.storage import BlobStore

_CLAIM = {name: stmt.returning(InboundSpool.id)
          for name, stmt in insert_or_ignore(InboundSpool, "dedupe_key").items()}
_RAW = select(InboundSpool.raw, InboundSpool.sha256).where(
    InboundSpool.id == bindparam("spool_id"))
FINISH = update(InboundSpool).where(InboundSpool.id == bindparam("spool_id")).values(
    status=bindparam("new_status"), reason=bindparam("new_reason"),
    ticket_id=bindparam("new_ticket"), processed_at=bindparam("at"))


async def claim(session: AsyncSession, key: str, message_id: str | None, sha: str, size: int,
                via: str, now: datetime, raw: bytes | None = None) -> int | None:
    """Insert a ``received`` spool row keyed by ``key``; its id, or None if the key exists.

    ``raw``: the message itself, for one kept in the row rather than the blob store.
    """
    conn = await connection(session)
    spool_id: int | None = (await run(conn, _CLAIM[conn.dialect.name], {
        "dedupe_key": key, "message_id": message_id, "sha256": sha, "size": size, "via": via,
        "status": "received", "reason": "", "received_at": now, "raw": raw,
    })).scalar_one_or_none()
    return spool_id


async def raw_message(session: AsyncSession, store: BlobStore, spool_id: int) -> bytes | None:
    """The raw bytes of spool row ``spool_id``: from the row, else from the blob store.

    None when there is no such row. Blob reads go to a thread (a mail can be megabytes).
    """
    row = (await session.execute(_RAW, {"spool_id": spool_id})).one_or_none()
    if row is None:
        return None
    if row.raw is not None:
        return bytes(row.raw)
    return await asyncio.to_thread(store.get, row.sha256)


async def finish(session: AsyncSession, spool_id: int, status: str, reason: str,
                 ticket_id: int | None, now: datetime) -> None:
    """Record what became of spool row ``spool_id``."""
    await run(await connection(session), FINISH,
              finish_values(spool_id, status, reason, ticket_id, now))


def finish_values(spool_id: int, status: str, reason: str, ticket_id: int | None,
                  now: datetime) -> dict[str, Any]:
    """`FINISH`'s parameters; ``reason`` is cut to 2000 characters."""
    return {"spool_id": spool_id, "new_status": status, "new_reason": reason[:2000],
            "new_ticket": ticket_id, "at": now}
