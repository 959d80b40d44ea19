"""Create or upgrade the database schema with Alembic, safely from several processes at once.

Alembic is imported only when there is something to migrate: a command that opens a
database already at :data:`HEAD` (every command, once installed) asks one question of
the ``alembic_version`` table and goes on, which keeps the MTA pipe's start-up short.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

    from helpdesk.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0011"
"""The newest revision in ``migrations/versions`` (a test holds it to Alembic's answer)."""
_PG_LOCK_KEY = 0x48454C50  # "HELP": one advisory lock id for schema changes


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The head revision as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(sync_conn: Any) -> str | None:
    try:
        with sync_conn.begin_nested():
            row = sync_conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except DBAPIError:  # no such table: an empty database
        return None
    return str(row[0]) if row is not None else None


def _upgrade(sync_conn: Any, revision: str = "head", settings: Settings | None = None) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    if settings is not None:  # 0005: existing tickets' type, the statuses to start with
        cfg.attributes["default_type"] = settings.tickets.default_type
        cfg.attributes["statuses"] = settings.tickets.statuses
    command.upgrade(cfg, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def migrate(engine: AsyncEngine, *, reader: AsyncEngine | None = None,
                  settings: Settings | None = None) -> bool:
    """Bring the schema to head; returns whether anything was applied.

    The check and the upgrade run in one transaction that holds the database's write lock
    (SQLite ``BEGIN IMMEDIATE``) or an advisory lock (PostgreSQL), so fifty processes
    starting at once apply each migration exactly once. The first look, whether there is
    anything to do, goes through ``reader`` when given (SQLite's deferred reader), so a
    process starting while another holds the write lock does not queue behind it.
    ``settings``: the configuration a migration may need (0005's default type and first
    statuses).
    """
    head = HEAD
    if await current_revision(reader or engine) == head:
        return False
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
        if await conn.run_sync(_current) == head:
            return False
        await conn.run_sync(_upgrade, "head", settings)
    return True
