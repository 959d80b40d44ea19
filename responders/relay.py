"""Move due outbox rows onto the broker: claim them in the database, then send their ids.

The relay is the only path from the outbox to Dramatiq. Each scan claims up to ``batch``
rows that are due (``pending`` whose ``next_attempt_at`` passed, or ``queued``/``sending``
whose lease ran out: a crashed worker, or a message lost with the in-memory broker), marks
them ``queued`` with a fresh lease, commits, and only then enqueues one
``send_outbox_row(row_id)`` message per row. A relay that dies between the commit and the
enqueue leaves rows ``queued``; their lease runs out and the next scan claims them again.
So rows still pending after a crash are sent after a restart, by any relay.

On PostgreSQL several relays (one per worker process) split the rows with ``FOR UPDATE
SKIP LOCKED``; on SQLite the transaction's write lock serialises them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog

from helpdesk import db, outbox_ops
from helpdesk.runtime import Runtime
from responders.broker import WorkerOptions

log = structlog.get_logger("responders.relay")

Enqueue = Callable[[Sequence[int]], None]
"""Hands claimed row ids to the broker (blocking; run in a thread)."""


async def relay_once(rt: Runtime, options: WorkerOptions, enqueue: Enqueue) -> int:
    """One scan: claim due rows, commit, enqueue their ids; returns how many."""
    async with rt.sessions() as session, session.begin():
        ids = await outbox_ops.claim_due(session, now=rt.clock(), lease=options.lease,
                                         limit=options.batch,
                                         max_in_flight=options.max_in_flight)
    if ids:
        await asyncio.to_thread(enqueue, ids)
        log.debug("outbox.relayed", rows=len(ids))
    return len(ids)


async def run_relay(rt: Runtime, stop: asyncio.Event, options: WorkerOptions,
                    enqueue: Enqueue) -> None:
    """Scan until ``stop`` is set: at once again after a full batch, else after a pause.

    A transient database error (locked, connection lost) is logged and the scan retried
    after the pause; anything else ends the relay with the error.
    """
    while not stop.is_set():
        try:
            count = await relay_once(rt, options, enqueue)
        except Exception as exc:
            if not db.is_transient(exc):
                raise
            log.warning("outbox.relay_retry", error=f"{type(exc).__name__}: {exc}")
            count = 0
        if count >= options.batch:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=options.poll_interval)
