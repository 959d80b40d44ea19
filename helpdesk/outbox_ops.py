"""Outbox row state transitions: claim for the queue, claim for sending, sent, retry, failed.

A row moves through these states; the database is the one source of truth, the broker
only carries row ids::

    pending --claim_due--> queued --claim_for_sending--> sending --mark_sent--> sent
       ^                     |  (lease expired: claim_due again)   |
       |                     +-------------------------------------+
       +---- mark_retry (4xx, connection) <------------------------+
                                       mark_failed (5xx, attempts used up) --> failed
    failed --retry (operator)--> pending

``queued`` and ``sending`` carry a lease in ``next_attempt_at``: a row whose lease ran out
(a crashed worker, a broker message lost with an in-memory broker) is due again and is
claimed again by the relay. ``claim_for_sending`` moves only a ``queued`` row, atomically,
so two broker messages for one row (a re-queued lease) never send it twice at the same
time. Nothing here talks to the network; callers own the session and transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.models import OutboxRow

PENDING = "pending"
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
STATES = (PENDING, QUEUED, SENDING, SENT, FAILED)

MAX_BACKOFF = timedelta(hours=1)


def backoff(attempts: int, base: timedelta) -> timedelta:
    """The wait before attempt ``attempts + 1``: ``base * 2**(attempts - 1)``, at most an hour.

    Args:
        attempts: attempts made so far (1 after the first failure).
        base: the wait after the first failure.
    """
    exponent = max(0, min(attempts - 1, 30))
    wait: timedelta = base * (2**exponent)
    return min(wait, max(MAX_BACKOFF, base))


async def claim_due(session: AsyncSession, *, now: datetime, lease: timedelta,
                    limit: int = 100, max_in_flight: int | None = None) -> list[int]:
    """Claim rows that are due for the queue and return their ids, oldest first.

    Due: ``pending`` with ``next_attempt_at <= now``, or ``queued``/``sending`` whose lease
    ran out. Claimed rows become ``queued`` with a lease until ``now + lease``. On
    PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED`` so concurrent relays split
    the work; on SQLite the transaction's write lock (``BEGIN IMMEDIATE``) serialises them.

    Args:
        max_in_flight: back-pressure: claim only as many as keep the rows holding a live
            lease (queued or sending) at or below this. The broker then never holds more
            than the workers can drain within a lease, so leases of rows that are merely
            waiting in the queue do not run out and get queued twice.
    """
    if max_in_flight is not None:
        in_flight = int((await session.execute(
            select(func.count()).select_from(OutboxRow).where(
                OutboxRow.status.in_((QUEUED, SENDING)), OutboxRow.next_attempt_at > now)
        )).scalar_one())
        limit = min(limit, max_in_flight - in_flight)
        if limit <= 0:
            return []
    due = and_(
        OutboxRow.status.in_((PENDING, QUEUED, SENDING)),
        or_(OutboxRow.next_attempt_at.is_(None), OutboxRow.next_attempt_at <= now),
    )
    stmt = select(OutboxRow.id).where(due).order_by(OutboxRow.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list((await session.execute(stmt)).scalars())
    if ids:
        await session.execute(
            update(OutboxRow).where(OutboxRow.id.in_(ids))
            .values(status=QUEUED, next_attempt_at=now + lease)
            .execution_options(synchronize_session=False))
    return ids


async def claim_for_sending(session: AsyncSession, row_id: int, *, now: datetime,
                            lease: timedelta) -> bool:
    """Move a ``queued`` row to ``sending`` (lease until ``now + lease``); False if not queued.

    False means another worker has it, it was sent already, or it failed: the caller
    drops the broker message.
    """
    result = await session.execute(
        update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.status == QUEUED)
        .values(status=SENDING, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, row_ids: Sequence[int], *, now: datetime) -> int:
    """Give ``queued`` rows back (``pending``, due now): their broker messages are gone.

    Used when an in-memory broker stops with messages it never delivered, so a restart
    sends them at once instead of after their lease. Returns how many rows moved.
    """
    if not row_ids:
        return 0
    result = await session.execute(
        update(OutboxRow).where(OutboxRow.id.in_(list(row_ids)), OutboxRow.status == QUEUED)
        .values(status=PENDING, next_attempt_at=now)
        .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def mark_sent(session: AsyncSession, row: OutboxRow, *, now: datetime) -> None:
    """Record that the smarthost accepted the row."""
    row.status = SENT
    row.sent_at = now
    row.attempts += 1
    row.last_error = ""
    row.next_attempt_at = None


async def mark_retry(session: AsyncSession, row: OutboxRow, *, now: datetime, error: str,
                     max_attempts: int, base: timedelta) -> bool:
    """Count a temporary failure; schedule the next attempt, or fail when attempts run out.

    Returns:
        True when the row will be retried, False when it is now ``failed``.
    """
    row.attempts += 1
    row.last_error = error
    if row.attempts >= max_attempts:
        row.status = FAILED
        row.next_attempt_at = None
        return False
    row.status = PENDING
    row.next_attempt_at = now + backoff(row.attempts, base)
    return True


async def mark_failed(session: AsyncSession, row: OutboxRow, *, error: str) -> None:
    """Record a permanent failure with the server's answer (or our own refusal)."""
    row.attempts += 1
    row.status = FAILED
    row.last_error = error
    row.next_attempt_at = None


async def retry(session: AsyncSession, row_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Put ``failed`` rows back to ``pending`` (due now, attempts reset); returns those moved.

    The Message-ID is kept, so a mail that did arrive after all is seen as the same one.
    """
    rows = (await session.execute(
        select(OutboxRow).where(OutboxRow.id.in_(list(row_ids)), OutboxRow.status == FAILED)
    )).scalars().all()
    for row in rows:
        row.status = PENDING
        row.attempts = 0
        row.next_attempt_at = now
    return sorted(r.id for r in rows)
