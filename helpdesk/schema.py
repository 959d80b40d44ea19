"""Create or upgrade the database schema with Alembic, safely from several processes at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x48454C50  # "HELP": one advisory lock id for schema changes


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(sync_conn: Any) -> str | None:
    return MigrationContext.configure(sync_conn).get_current_revision()


def _upgrade(sync_conn: Any, revision: str = "head") -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def migrate(engine: AsyncEngine) -> bool:
    """Bring the schema to head; returns whether anything was applied.

    The check and the upgrade run in one transaction that holds the database's write lock
    (SQLite ``BEGIN IMMEDIATE``) or an advisory lock (PostgreSQL), so fifty processes
    starting at once apply each migration exactly once.
    """
    head = head_revision()
    if await current_revision(engine) == head:
        return False
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
        if await conn.run_sync(_current) == head:
            return False
        await conn.run_sync(_upgrade)
    return True
