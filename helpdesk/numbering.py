"""Race-safe, gap-free ticket numbers: a counter row bumped inside the creating transaction."""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.direct import connection, run
from helpdesk.models import Counter

TICKET_COUNTER = "ticket"
_BUMP = (update(Counter).where(Counter.name == bindparam("counter"))
         .values(value=Counter.value + 1).returning(Counter.value))


async def next_number(session: AsyncSession, name: str = TICKET_COUNTER) -> int:
    """Take the next number of sequence ``name`` in the caller's transaction.

    ``UPDATE ... RETURNING`` locks the counter row (PostgreSQL) or runs under the database
    write lock (SQLite, ``BEGIN IMMEDIATE``) until the caller commits or rolls back, so
    concurrent creators queue up and a rolled-back creation gives its number back: the
    numbers are 1..N with no duplicate and no gap. A sequence would be faster but leaves
    gaps on rollback, which operators read as lost tickets.
    """
    result = await run(await connection(session), _BUMP, {"counter": name})
    value = result.scalar_one_or_none()
    if value is None:
        session.add(Counter(name=name, value=1))
        await session.flush()
        return 1
    return int(value)

