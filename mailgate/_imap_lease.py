"""The IMAP poller's row in `imap_state`: who may poll a mailbox (a lease) and where it stopped.

One row per mailbox. A poller takes the lease with one conditional UPDATE (the row is free,
already ours, or its lease has expired), so when several `mailgate` processes race for it,
exactly one UPDATE matches on SQLite and on PostgreSQL alike. The holder renews the lease
with every checkpoint; a checkpoint that no longer matches (someone else holds the row now)
raises `LeaseLost`, and the poller stops ingesting at once. Ingest is idempotent anyway, so
the lease is about never working a mailbox twice at once, not about correctness of tickets.

Every function takes the instant ``now`` explicitly; the caller owns the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from helpdesk.db import insert_or_ignore
from helpdesk.models import ImapState

Sessions = async_sessionmaker[AsyncSession]


class LeaseLost(Exception):
    """Raised when a checkpoint finds that another holder has taken the mailbox's lease."""


@dataclass(frozen=True)
class MailboxState:
    """Where polling of one mailbox stopped: its UIDVALIDITY and the last UID fully handled."""

    uidvalidity: int
    last_uid: int


_NEW_ROW = insert_or_ignore(ImapState, "mailbox")


async def _ensure_row(session: AsyncSession, mailbox: str) -> None:
    await session.execute(_NEW_ROW[session.get_bind().dialect.name], {
        "mailbox": mailbox, "uidvalidity": 0, "last_uid": 0, "holder": "",
        "lease_until": None})


async def acquire(sessions: Sessions, mailbox: str, holder: str, now: datetime,
                  ttl: timedelta) -> bool:
    """Take or renew the lease on ``mailbox`` for ``holder`` until ``now + ttl``.

    Returns:
        True when ``holder`` now holds the lease; False when another holder's lease is
        still running.
    """
    async with sessions() as session, session.begin():
        await _ensure_row(session, mailbox)
        result = await session.execute(
            update(ImapState)
            .where(ImapState.mailbox == mailbox,
                   or_(ImapState.holder == holder, ImapState.holder == "",
                       ImapState.lease_until.is_(None), ImapState.lease_until < now))
            .values(holder=holder, lease_until=now + ttl))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def current_holder(sessions: Sessions, mailbox: str) -> tuple[str, datetime | None]:
    """The holder id and lease end recorded for ``mailbox`` (``("", None)`` when none)."""
    async with sessions() as session:
        row = (await session.execute(
            select(ImapState.holder, ImapState.lease_until)
            .where(ImapState.mailbox == mailbox))).one_or_none()
    return (row[0], row[1]) if row is not None else ("", None)


async def read_state(sessions: Sessions, mailbox: str) -> MailboxState:
    """The recorded UIDVALIDITY and last handled UID (zeros for a mailbox never polled)."""
    async with sessions() as session:
        row = (await session.execute(
            select(ImapState.uidvalidity, ImapState.last_uid)
            .where(ImapState.mailbox == mailbox))).one_or_none()
    return MailboxState(int(row[0]), int(row[1])) if row is not None else MailboxState(0, 0)


async def checkpoint(sessions: Sessions, mailbox: str, holder: str, state: MailboxState,
                     now: datetime, ttl: timedelta) -> None:
    """Record ``state`` and renew the lease, only while ``holder`` still holds the row.

    Raises:
        LeaseLost: another holder has taken the mailbox; stop polling it.
    """
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(ImapState)
            .where(ImapState.mailbox == mailbox, ImapState.holder == holder)
            .values(uidvalidity=state.uidvalidity, last_uid=state.last_uid,
                    lease_until=now + ttl))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"{mailbox}: lease taken by another poller")


async def release(sessions: Sessions, mailbox: str, holder: str) -> None:
    """Give the lease up (on a clean stop) so another process can take over at once."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(ImapState)
            .where(ImapState.mailbox == mailbox, ImapState.holder == holder)
            .values(holder="", lease_until=None))
