"""The schema's HEAD constant, which lets a command skip Alembic, is Alembic's own head."""

from __future__ import annotations

import subprocess
import sys

from helpdesk import schema


def test_head_constant_is_the_newest_migration() -> None:
    assert schema.head_revision() == schema.HEAD


def test_opening_a_current_database_imports_no_alembic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = f"""
import asyncio, sys
from helpdesk import schema
from helpdesk.config import DatabaseSettings
from helpdesk.db import create_engine

async def main():
    engine = create_engine(DatabaseSettings(url="sqlite+aiosqlite:///{tmp_path}/hd.db"))
    assert await schema.migrate(engine)          # a new database: Alembic creates it
    await engine.dispose()
    for name in [m for m in sys.modules if m.startswith("alembic")]:
        del sys.modules[name]
    engine = create_engine(DatabaseSettings(url="sqlite+aiosqlite:///{tmp_path}/hd.db"))
    assert not await schema.migrate(engine)      # at HEAD: one query, no Alembic
    await engine.dispose()
    assert not [m for m in sys.modules if m.startswith("alembic")]

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


async def test_opening_a_current_database_does_not_wait_for_its_write_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3
    import time

    from helpdesk.runtime import Runtime
    from tests.conftest import make_settings, sqlite_url

    settings = make_settings(tmp_path, sqlite_url(tmp_path), database={"busy_timeout_ms": 5000})
    rt = await Runtime.open(settings)  # creates it
    await rt.close()
    holder = sqlite3.connect(tmp_path / "helpdesk.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        started = time.monotonic()
        rt = await Runtime.open(settings)
        await rt.close()
        assert time.monotonic() - started < 2.5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
