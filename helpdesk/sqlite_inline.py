"""An aiosqlite-shaped SQLite connection that runs statements on the event loop's thread.

Why: aiosqlite hands every statement to a helper thread and wakes the event loop when it
is done. A SQLite statement inside a write transaction takes microseconds, the round trip
takes about a millisecond under load, and the gateway's ~20 statements per message made
that hop most of its cost (measured: 65 → 117 messages/s in-process with this adapter).

Only the calls that can wait run on a thread: ``BEGIN`` when another process holds the
write lock (it waits out the busy timeout there; a free lock is taken on the loop),
``COMMIT`` (fsync with ``synchronous=FULL``, WAL checkpoints) and connecting. Each
connection has its own thread for them: on a shared pool, BEGINs waiting for the lock
could take every thread and leave the holder's COMMIT none to run on, so nobody would
get the lock until the busy timeout failed them all. Everything else runs inline, so it
is meant for the writer engine, whose transactions hold the database lock anyway; long
read-only queries (portal pages, listings) keep using aiosqlite on the reader engine.

SQLAlchemy's aiosqlite dialect drives it unchanged through ``async_creator``: the shape
is the part of aiosqlite's API that the dialect calls.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_WAITING = re.compile(r"\s*(?:BEGIN|COMMIT|END)\b", re.IGNORECASE)  # the calls that wait
_BEGIN = re.compile(r"\s*BEGIN\b", re.IGNORECASE)
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class InlineCursor:
    """The async cursor API over a sqlite3 cursor; only BEGIN/COMMIT leave the thread."""

    def __init__(self, conn: sqlite3.Connection, waiter: ThreadPoolExecutor,
                 busy_ms: int) -> None:
        self._cursor = conn.cursor()
        self._waiter = waiter
        self._busy_ms = busy_ms

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        if _BEGIN.match(sql) and self._begin_now(sql):
            return self
        if _WAITING.match(sql):
            await asyncio.get_running_loop().run_in_executor(
                self._waiter, self._cursor.execute, sql, parameters)
        else:
            self._cursor.execute(sql, parameters)
        return self

    def _begin_now(self, sql: str) -> bool:
        """BEGIN on the loop when the lock is free; False when another process holds it.

        An uncontended BEGIN takes microseconds, a trip to the waiting thread and back
        most of a millisecond, paid once per transaction while the loop has nothing to do.
        With the busy timeout off it cannot wait; only when it would wait does it go to
        the thread, with the timeout back on.
        """
        conn = self._cursor.connection  # the pragmas' rows stay off this cursor
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            self._cursor.execute(sql)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY:  # primary code of an extended one
                raise
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return True

    async def executemany(self, sql: str, seq: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, seq)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size or self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The async connection API that SQLAlchemy's aiosqlite adapter calls."""

    def __init__(self, conn: sqlite3.Connection, busy_ms: int) -> None:
        self._connection: sqlite3.Connection | None = conn
        self._busy_ms = busy_ms
        self._waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-wait")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself, for `helpdesk.direct`'s statements."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn, self._waiter, self._busy_ms)

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        cursor = self.cursor()
        await cursor.execute(sql, parameters)
        return cursor

    async def commit(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._waiter, self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        """Close after any BEGIN or COMMIT in flight, without blocking the event loop."""
        conn, self._connection = self._connection, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._waiter, conn.close)
            self._waiter.shutdown(wait=True)  # idle by now: returns at once

    def stop(self) -> None:
        """SQLAlchemy's terminate (a cancelled task's connection): never wait on the loop.

        A BEGIN in flight may be waiting out another process's lock; the close is queued
        behind it on the connection's own thread.
        """
        conn, self._connection = self._connection, None
        if conn is not None:
            self._waiter.submit(conn.close)
            self._waiter.shutdown(wait=False)


def connector(path: str, *, timeout: float) -> Callable[[], Awaitable[InlineConnection]]:
    """An ``async_creator`` for ``create_async_engine`` opening ``path`` in autocommit mode.

    ``isolation_level=None`` leaves transaction control to the engine's ``BEGIN IMMEDIATE``;
    ``check_same_thread=False`` lets BEGIN and COMMIT run on a worker thread.
    """

    async def connect() -> InlineConnection:
        conn = await asyncio.to_thread(sqlite3.connect, path, timeout=timeout,
                                       isolation_level=None, check_same_thread=False)
        return InlineConnection(conn, round(timeout * 1000))

    return connect
