"""The transaction a change is made in, as the ticket service and its listeners write to it.

Why a handle: listeners (notifications, audit, later automation) must write in the same
transaction as the change, and nothing else. Given a `Tx` they can; given an ORM object
they would dig a session out of it and could do anything.

Why a row buffer: rows that nothing later in the transaction reads back (attachments,
audit events, message references, outbox rows, ticket links, a ticket's ``updated_at``,
the spool row's outcome) can be inserted with one statement per table at the end instead of one
statement each. The gateway's group commit opens a buffer for its batch (`open_buffer`)
and writes it before it commits (`write_buffer`); without an open buffer, `Tx.add` inserts
at once. Two reads could miss buffered rows and flush them first: threading by a
Message-ID that a buffered reference holds (`RowBuffer.message_ids`), and an hourly limit
on mail to an address a buffered outbox row is for (`RowBuffer.mailed`). Everything that
reads those tables through the ORM calls `Tx.flush` (or `write_buffer`) first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable

from helpdesk.direct import connection, run
from helpdesk.models import Attachment, AuditEvent, MessageRef, OutboxRow, Ticket, TicketLink

_INSERTS: dict[Any, Executable] = {
    table: insert(table)
    for table in (Attachment, AuditEvent, MessageRef, OutboxRow, TicketLink)}
TOUCH = update(Ticket).where(Ticket.id == bindparam("ticket")).values(
    updated_at=bindparam("at"))
"""A ticket's ``updated_at`` set to ``at``: buffered, it costs one statement per batch."""
_KEY = "helpdesk.rowbuffer"


class RowBuffer:
    """Rows and updates left for the end of the transaction, per statement in order."""

    def __init__(self) -> None:
        self.statements: dict[Executable, list[Mapping[str, Any]]] = {
            stmt: [] for stmt in _INSERTS.values()}
        # written after everything else: the search index's rows (FTS5 writes its pending
        # terms out as an index segment whenever a later statement of the transaction
        # opens a savepoint, which many do; last, a batch's rows make one segment)
        self.last: dict[Executable, list[Mapping[str, Any]]] = {}
        self.message_ids: set[str] = set()  # of buffered message references
        self.mailed: set[str] = set()  # addresses of buffered outbox rows

    def __bool__(self) -> bool:
        return any(self.statements.values()) or any(self.last.values())


def open_buffer(session: AsyncSession) -> RowBuffer:
    """Start buffering rows for ``session``'s transaction (the gateway's group commit)."""
    buffer: RowBuffer | None = session.info.get(_KEY)
    if buffer is None:
        buffer = session.info[_KEY] = RowBuffer()
    return buffer


def buffer_of(session: AsyncSession) -> RowBuffer | None:
    return session.info.get(_KEY)


async def write_buffer(session: AsyncSession) -> None:
    """Insert and update what was buffered, one statement per table; the buffer stays open.

    The rows are taken out first, so rows that fail to insert are not tried again with
    the next unit (the group commit rolls back whatever held them).
    """
    buffer: RowBuffer | None = session.info.get(_KEY)
    if not buffer:
        return
    pending, last = buffer.statements, buffer.last
    buffer.statements = {stmt: [] for stmt in _INSERTS.values()}
    buffer.last = {}
    buffer.message_ids.clear()
    buffer.mailed.clear()
    conn = await connection(session)
    for stmt, rows in [*pending.items(), *last.items()]:
        if rows:
            await run(conn, stmt, list(rows))


def discard_buffer(session: AsyncSession) -> None:
    """Forget what was buffered: the unit that buffered it failed and is rolled back."""
    buffer: RowBuffer | None = session.info.get(_KEY)
    if buffer is not None:
        session.info[_KEY] = RowBuffer()


class Tx:
    """What a change and its listeners may write to: the caller's session's transaction."""

    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def connection(self) -> AsyncConnection:
        return await connection(self.session)

    @property
    def cache(self) -> dict[str, Any]:
        """Per-transaction memo for listeners (e.g. the agents, read once per batch)."""
        cache: dict[str, Any] = self.session.info.setdefault("helpdesk.txcache", {})
        return cache

    async def add(self, table: Any, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` into ``table`` (attachments, audit, references, outbox)."""
        batch = [rows] if isinstance(rows, Mapping) else list(rows)
        if not batch:
            return
        buffer: RowBuffer | None = self.session.info.get(_KEY)
        if buffer is None:
            await run(await self.connection(), _INSERTS[table], batch)
            return
        buffer.statements[_INSERTS[table]].extend(batch)
        if table is MessageRef:
            buffer.message_ids.update(row["message_id"] for row in batch)
        elif table is OutboxRow:
            buffer.mailed.update(row["to_addr"].lower() for row in batch)

    async def later(self, stmt: Executable, params: Mapping[str, Any], *,
                    last: bool = False) -> None:
        """Run an UPDATE now, or with the buffer (one executemany per statement); ``last``:
        after every other statement of the buffer (see `RowBuffer.last`)."""
        buffer: RowBuffer | None = self.session.info.get(_KEY)
        if buffer is None:
            await run(await self.connection(), stmt, params)
            return
        (buffer.last if last else buffer.statements).setdefault(stmt, []).append(params)

    async def outbox(self, values: Mapping[str, Any]) -> None:
        """One outbox row; a ticket's rows also become threading references."""
        await self.add(OutboxRow, values)
        if values["ticket_id"] is not None:
            await self.add(MessageRef, {"message_id": values["message_id"],
                                        "ticket_id": values["ticket_id"], "direction": "out"})

    async def flush(self) -> None:
        """Write the buffer now: something is about to read the tables it holds."""
        await write_buffer(self.session)

    async def flush_for(self, *, message_ids: Sequence[str] = (), mailed: str = "") -> None:
        """Write the buffer if it holds a reference to ``message_ids`` or mail to ``mailed``."""
        buffer: RowBuffer | None = self.session.info.get(_KEY)
        if buffer is None:
            return
        if buffer.message_ids.intersection(message_ids) or (
                mailed and mailed.lower() in buffer.mailed):
            await write_buffer(self.session)
