"""The async engine and session factory, tuned per backend (SQLite WAL + busy timeout, asyncpg)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from helpdesk import sqlite_inline
from helpdesk.config import DatabaseSettings

# A row of a Core select, read by attribute (``row.id``); its columns are the statement's.
# SQLAlchemy's ``Row``, or a named tuple where `helpdesk.direct` ran the statement.
CoreRow: TypeAlias = Any


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(settings: DatabaseSettings, *, writer: bool = True) -> AsyncEngine:
    """An engine for the configured URL.

    SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk before we answer
    250) and every writer transaction starts with ``BEGIN IMMEDIATE``: several processes
    share one file, and a deferred transaction that later upgrades to a write lock fails
    with SQLITE_BUSY without waiting, where an immediate one waits out the busy timeout.
    A reader engine (``writer=False``) begins deferred, so page views and listings read
    their WAL snapshot without queueing behind writers. The writer runs its statements on
    the event loop's thread (`helpdesk.sqlite_inline`), the reader through aiosqlite's thread.
    """
    url = make_url(settings.url)
    kwargs: dict[str, Any] = {"echo": settings.echo}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        timeout = settings.busy_timeout_ms / 1000
        if writer and url.database and url.database != ":memory:":
            kwargs["async_creator"] = sqlite_inline.connector(url.database, timeout=timeout)
        else:
            kwargs["connect_args"] = {"timeout": timeout}
    else:
        kwargs["pool_size"] = settings.pool_size
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _tune_sqlite(engine, settings.busy_timeout_ms, "BEGIN IMMEDIATE" if writer else "BEGIN")
    return engine


def _tune_sqlite(engine: AsyncEngine, busy_timeout_ms: int, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection.isolation_level is not None:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def insert_or_ignore(model: Any, key: str) -> dict[str, postgresql.Insert | sqlite.Insert]:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` for each backend, by dialect name.

    Both backends spell it the same, but SQLAlchemy builds it from each dialect's own
    ``insert``. Build it once (at import) and pick with ``connection.dialect.name``; the
    values come as execute parameters.
    """
    return {
        "postgresql": postgresql.insert(model).on_conflict_do_nothing(index_elements=[key]),
        "sqlite": sqlite.insert(model).on_conflict_do_nothing(index_elements=[key]),
    }


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means 'try again later' (locked, busy, connection lost)."""
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))
