"""The SQLite writer connection (`helpdesk.sqlite_inline`) through a real engine and file.

The writer engine from `helpdesk.db.create_engine` drives ``InlineConnection``: statements
run on the event loop's thread, ``COMMIT`` and a ``BEGIN`` that must wait for the lock on a
thread per connection, so many writers waiting for the lock never starve the holder's
``COMMIT``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from helpdesk import db, sqlite_inline
from helpdesk.config import DatabaseSettings
from tests.conftest import make_settings, sqlite_url


async def _engine(path: Path, busy_timeout_ms: int = 10_000) -> AsyncEngine:
    engine = db.create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}",
                                               busy_timeout_ms=busy_timeout_ms))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS notes ("
                                "id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = await _engine(tmp_path / "inline.db")
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return db.session_factory(engine)


async def _bodies(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(text("SELECT body FROM notes ORDER BY id"))).scalars())


def _hold_write_lock(path: str) -> sqlite3.Connection:
    """Another connection (as another process would) holding the write lock on a new db."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    return holder


async def _insert(session: AsyncSession, body: str) -> None:
    await session.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": body})


async def test_the_writer_uses_the_inline_connection_and_the_reader_does_not(
        tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sqlite_url(tmp_path))
    writer = db.create_engine(settings.database)
    reader = db.create_engine(settings.database, writer=False)
    try:
        async with writer.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, sqlite_inline.InlineConnection)
        async with reader.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not isinstance(raw.driver_connection, sqlite_inline.InlineConnection)
    finally:
        await writer.dispose()
        await reader.dispose()


async def test_insert_select_commit_and_rollback(sessions: async_sessionmaker[AsyncSession]
                                                 ) -> None:
    async with sessions() as session, session.begin():
        await _insert(session, "kept")
    async with sessions() as session:
        await _insert(session, "rolled back")
        assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 2
        await session.rollback()
    async with sessions() as session:
        await _insert(session, "committed later")
        await session.commit()
    with pytest.raises(RuntimeError, match="boom"):
        async with sessions() as session, session.begin():
            await _insert(session, "lost to an exception")
            raise RuntimeError("boom")
    assert await _bodies(sessions) == ["kept", "committed later"]


async def test_fetchmany_fetchone_and_executemany_work(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES (:b)"),
                           [{"b": f"n{i}"} for i in range(10)])
    async with engine.connect() as conn:
        result = await conn.stream(text("SELECT body FROM notes ORDER BY id"))
        first = await result.fetchmany(3)
        rest = [row async for row in result]
    assert [r[0] for r in first] == ["n0", "n1", "n2"]
    assert len(rest) == 7
    async with engine.connect() as conn:
        one = (await conn.execute(text("SELECT body FROM notes WHERE body = 'n5'"))).one()
        assert one[0] == "n5"


async def test_statements_and_a_free_begin_run_on_the_loop_thread_and_commit_elsewhere(
        engine: AsyncEngine) -> None:
    """The point of the adapter: ordinary statements, and BEGIN when nobody else holds the
    lock, need no thread hop; COMMIT (an fsync) does not stall the loop."""
    seen: list[tuple[str, int]] = []

    @event.listens_for(engine.sync_engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        raw: sqlite3.Connection = dbapi_connection.driver_connection._conn
        raw.set_trace_callback(lambda sql: seen.append((sql.split()[0].upper(),
                                                        threading.get_ident())))
        raw.create_function("tid", 0, threading.get_ident)

    await engine.dispose()  # new connections get the trace and the function
    seen.clear()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES ('traced')"))
        statement_thread = (await conn.execute(text("SELECT tid()"))).scalar_one()
    loop_thread = threading.get_ident()
    assert statement_thread == loop_thread
    threads = {verb: tid for verb, tid in seen}
    assert threads["INSERT"] == loop_thread and threads["SELECT"] == loop_thread
    assert threads["BEGIN"] == loop_thread
    assert threads["COMMIT"] != loop_thread
    async with engine.connect() as conn:  # the busy timeout is back after the free BEGIN
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 10_000


async def test_the_busy_timeout_comes_back_to_the_millisecond(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "timeout.db", busy_timeout_ms=1001)  # 1.001 s: not exact
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('x')"))
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 1001
    finally:
        await engine.dispose()


async def test_a_begin_that_must_wait_for_the_lock_waits_on_the_connections_thread(
        tmp_path: Path) -> None:
    path = str(tmp_path / "contended.db")
    holder = _hold_write_lock(path)
    conn = await sqlite_inline.connector(path, timeout=5.0)()
    seen: list[int] = []
    conn._conn.set_trace_callback(
        lambda sql: seen.append(threading.get_ident()) if sql.startswith("BEGIN") else None)
    begin = asyncio.ensure_future(conn.cursor().execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.2)
    assert not begin.done()  # waiting, and the loop runs meanwhile
    holder.execute("COMMIT")
    await asyncio.wait_for(begin, 5)
    await conn.cursor().execute("INSERT INTO t VALUES (1)")
    await conn.commit()
    await conn.close()
    holder.close()
    assert seen[0] == threading.get_ident()  # tried on the loop first, busy at once
    assert seen[-1] != threading.get_ident()  # then waited on the connection's thread


async def test_nine_writers_queue_behind_a_lock_holder_without_starving_its_commit(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Eight BEGINs wait for the lock while the holder commits, on a two-thread default pool.

    With BEGIN and COMMIT on a shared pool, the waiting BEGINs took every thread and the
    holder's COMMIT had none: all of them failed with 'database is locked' at the timeout.
    """
    loop = asyncio.get_running_loop()
    small = ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(small)
    started = asyncio.Event()

    async def writer(n: int) -> float:
        await started.wait()
        async with sessions() as session, session.begin():
            await _insert(session, f"writer {n}")
        return time.monotonic()

    async with sessions() as holder:
        await _insert(holder, "holder")  # BEGIN IMMEDIATE: A holds the write lock
        tasks = [asyncio.create_task(writer(n)) for n in range(8)]
        started.set()
        await asyncio.sleep(0.3)  # every writer is now waiting in BEGIN
        assert not any(t.done() for t in tasks)
        committed = time.monotonic()
        await asyncio.wait_for(holder.commit(), timeout=5)
    finished = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert all(t >= committed for t in finished)
    bodies = await _bodies(sessions)
    assert bodies[0] == "holder"
    assert sorted(bodies[1:]) == sorted(f"writer {n}" for n in range(8))


async def test_begin_waits_for_another_process_while_the_loop_keeps_running(
        tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    engine = await _engine(path, busy_timeout_ms=10_000)
    sessions = db.session_factory(engine)
    locked, release_after = threading.Event(), 0.5

    def other_process() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO notes (body) VALUES ('other process')")
            locked.set()
            time.sleep(release_after)
            conn.execute("COMMIT")
        finally:
            conn.close()

    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    holder = threading.Thread(target=other_process)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        ticking = asyncio.create_task(ticker())
        start = time.monotonic()
        async with sessions() as session, session.begin():
            await _insert(session, "ours")
        waited = time.monotonic() - start
        stop.set()
        await ticking
    finally:
        await asyncio.to_thread(holder.join)
        await engine.dispose()
    assert waited >= release_after * 0.6
    assert ticks >= 15, f"the loop ticked {ticks} times in {waited:.2f}s"
    engine = db.create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        assert await _bodies(db.session_factory(engine)) == ["other process", "ours"]
    finally:
        await engine.dispose()


async def test_begin_gives_up_with_database_is_locked_after_the_busy_timeout(
        tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    engine = await _engine(path, busy_timeout_ms=200)
    sessions = db.session_factory(engine)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        start = time.monotonic()
        with pytest.raises(Exception, match="database is locked") as info:
            async with sessions() as session, session.begin():
                await _insert(session, "never")
        assert db.is_transient(info.value)
        assert time.monotonic() - start >= 0.15
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    async with sessions() as session, session.begin():  # the connection is usable again
        await _insert(session, "after")
    assert await _bodies(sessions) == ["after"]
    await engine.dispose()


async def test_closing_the_engine_stops_the_waiter_threads(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate() if t.name.startswith("sqlite-wait")}
    engine = await _engine(tmp_path / "close.db")
    async with db.session_factory(engine)() as session, session.begin():
        await _insert(session, "x")
    await engine.dispose()
    after = {t.ident for t in threading.enumerate() if t.name.startswith("sqlite-wait")}
    assert after <= before


async def test_terminate_while_begin_waits_for_a_lock_does_not_block_the_loop(
        tmp_path: Path) -> None:
    """SQLAlchemy terminates the connection of a cancelled task from the event loop; a BEGIN
    of that connection may be waiting out another process's lock on its own thread."""
    path = str(tmp_path / "terminate.db")
    holder = _hold_write_lock(path)
    conn = await sqlite_inline.connector(path, timeout=2.0)()
    cursor = conn.cursor()
    begin = asyncio.ensure_future(cursor.execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.2)  # the BEGIN is now waiting for the holder's lock
    assert not begin.done()
    started = time.perf_counter()
    conn.stop()
    assert time.perf_counter() - started < 0.1
    holder.execute("COMMIT")
    holder.close()
    await asyncio.wait_for(begin, 5)  # the BEGIN got the lock; the close ran after it
    with pytest.raises(ValueError):
        conn.cursor()
