"""Group commit: concurrent units of work share one transaction, each in its own SAVEPOINT.

Why: on SQLite every transaction takes the one write lock and pays one fsync on commit;
eight receivers committing separately spend their time waiting on each other's lock and
fsync. Here the first caller becomes the drainer: it takes everything queued so far,
runs the units in one transaction, commits once, and only then wakes the callers, so
each still learns its result after its work is durable.

Units rarely fail, and a SAVEPOINT per unit costs two statements and two flushes each,
so a batch first runs without them. If anything in it raises, that transaction is rolled
back whole and the batch runs again with a SAVEPOINT per unit: the unit that raises is
rolled back alone and gets its own exception. A failure of the transaction itself
(begin, commit) is given to every unit of the batch.

``before_commit`` runs beside each batch and must finish before it commits: the gateway
makes the batch's raw mails durable there, one sync for the batch instead of two fsyncs
per mail. If it fails, the batch rolls back and every unit gets the error.

``max_wait`` lets a batch wait for company (PostgreSQL's ``commit_delay`` applied to
batches). Under load the first unit to arrive after a commit would otherwise go alone
while the callers just woken are still sending their next ones: eight SMTP clients
settle into batches of 1 and 7. Each batch costs the loop a session, BEGIN, the deferred
inserts and a COMMIT, so fewer, fuller batches cost less CPU per unit: with 4 ms the
gateway spent a fifth less CPU per mail in `bench/ingest.py` (1.39 against 1.72 ms,
medians of five interleaved rounds on the 2-core benchmark machine). So a batch waits,
at most ``max_wait`` seconds, until as many units are pending as the last two batches
held on average. A lone caller (the pipe, a quiet SMTP server) has batches of one and
never waits; when load drops, one or two batches wait out ``max_wait`` and the target
follows.

``finish(session)`` writes what units left for later (the ticket service's row buffer,
rows that nothing in the batch reads back, to insert them with one statement per table):
after the last unit of a plain batch, and inside each unit's SAVEPOINT when the batch
runs again unit by unit, so a unit's deferred rows fail and roll back with that unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Unit(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    result: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Apply items with ``apply(session, item)`` in shared, savepointed transactions."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 apply: Callable[[AsyncSession, T], Awaitable[R]], *, max_batch: int = 64,
                 before_commit: Callable[[], Awaitable[None]] | None = None,
                 finish: Callable[[AsyncSession], Awaitable[None]] | None = None,
                 max_wait: float = 0.0) -> None:
        self.sessions = sessions
        self.apply = apply
        self.max_batch = max_batch
        self.before_commit = before_commit
        self.finish = finish
        self.max_wait = max_wait
        self._pending: list[_Unit[T, R]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._sizes = (1, 1)  # of the last two batches: the target of the next
        self._arrival: asyncio.Event | None = None  # set on submit while a batch waits

    async def submit(self, item: T) -> R:
        """Apply ``item``; returns once the transaction that holds it has committed."""
        unit: _Unit[T, R] = _Unit(item, asyncio.get_running_loop().create_future())
        self._pending.append(unit)
        if self._arrival is not None:
            self._arrival.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await asyncio.shield(unit.future)

    async def _drain(self) -> None:
        while self._pending:
            await self._wait_for_company()
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            self._sizes = (self._sizes[1], len(batch))
            await self._run(batch)

    async def _wait_for_company(self) -> None:
        """Until as many units are pending as the last two batches held, or ``max_wait``."""
        want = min(self.max_batch, math.ceil(sum(self._sizes) / 2))
        if self.max_wait <= 0 or len(self._pending) >= want:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        self._arrival = arrival = asyncio.Event()
        try:
            while len(self._pending) < want and loop.time() < deadline:
                arrival.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await arrival.wait()
        finally:
            self._arrival = None

    async def _run(self, batch: list[_Unit[T, R]]) -> None:
        if await self._run_plain(batch):
            return
        try:
            async with self.sessions() as session, session.begin(), self._ready() as ready:
                for unit in batch:
                    try:
                        async with session.begin_nested():
                            unit.result = await self.apply(session, unit.item)
                            if self.finish is not None:
                                await self.finish(session)
                    except Exception as exc:
                        unit.error = exc
                await ready
        except Exception as exc:
            for unit in batch:
                if not unit.future.done():
                    unit.future.set_exception(exc)
            return
        self._wake(batch)

    async def _run_plain(self, batch: list[_Unit[T, R]]) -> bool:
        """The batch in one transaction without savepoints; False when anything raised."""
        try:
            async with self.sessions() as session, session.begin(), self._ready() as ready:
                for unit in batch:
                    unit.result = await self.apply(session, unit.item)
                if self.finish is not None:
                    await self.finish(session)
                await ready
        except Exception as exc:
            if len(batch) > 1:
                return False  # rolled back whole: run again, a savepoint per unit
            batch[0].error = exc
        self._wake(batch)
        return True

    @contextlib.asynccontextmanager
    async def _ready(self) -> AsyncIterator[asyncio.Future[None]]:
        """``before_commit``, started now so that it overlaps the batch's work."""
        if self.before_commit is None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            yield done
            return
        task = asyncio.ensure_future(self.before_commit())
        try:
            yield task
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task  # retrieved, so an error is not reported twice

    @staticmethod
    def _wake(batch: list[_Unit[T, R]]) -> None:
        for unit in batch:
            if unit.future.done():
                continue
            if unit.error is not None:
                unit.future.set_exception(unit.error)
            else:
                unit.future.set_result(unit.result)  # type: ignore[arg-type]
