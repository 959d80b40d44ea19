"""Upgrading a database made by an earlier release, on SQLite and PostgreSQL.

0002 added ``inbound_spool.raw`` (small raw mail kept in its row). A spool row written
before keeps its bytes in the blob store; after the upgrade both kinds are read alike and
new mail goes into the row.
"""

from __future__ import annotations

from sqlalchemy import text

from helpdesk import db, schema
from helpdesk.config import Settings
from helpdesk.runtime import Runtime
from mailgate import _spool
from mailgate.service import make_gateway
from tests.e2e.test_smtp_gateway import mail


async def test_a_0001_database_upgrades_and_keeps_its_raw_mail_readable(
        settings: Settings) -> None:
    engine = db.create_engine(settings.database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema._upgrade, "0001")
        assert await schema.current_revision(engine) == "0001"
    finally:
        await engine.dispose()
    rt = await Runtime.open(settings, migrate=False)
    try:
        old = mail("written before the upgrade").as_bytes()
        sha = rt.store.put(old)
        async with rt.engine.begin() as conn:  # a spool row as release 0001 wrote it
            await conn.execute(text(
                "INSERT INTO inbound_spool (dedupe_key, message_id, sha256, size, via, status,"
                " reason, received_at) VALUES ('k', NULL, :sha, :size, 'smtp', 'quarantined',"
                " 'old', '2026-11-01 10:00:00')"), {"sha": sha, "size": len(old)})
    finally:
        await rt.close()

    rt = await Runtime.open(settings)  # upgrades to head
    try:
        assert await schema.current_revision(rt.engine) == schema.head_revision()
        new = mail("written after the upgrade").as_bytes()
        result = await make_gateway(rt).ingest(new, "smtp")
        async with rt.sessions() as session:
            [old_id] = (await session.execute(text(
                "SELECT id FROM inbound_spool WHERE dedupe_key = 'k'"))).scalars()
            assert await _spool.raw_message(session, rt.store, old_id) == old
            assert await _spool.raw_message(session, rt.store, result.spool_id) == new
            in_row = (await session.execute(text(
                "SELECT raw IS NOT NULL FROM inbound_spool WHERE id = :id"),
                {"id": result.spool_id})).scalar_one()
        assert in_row
        retried = await make_gateway(rt).retry(old_id)  # an old quarantined mail replays
        assert retried.disposition == "ticket"
    finally:
        await rt.close()
