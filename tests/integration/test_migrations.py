"""Upgrading a database made by an earlier release, on SQLite and PostgreSQL.

0002 added ``inbound_spool.raw`` (small raw mail kept in its row). A spool row written
before keeps its bytes in the blob store; after the upgrade both kinds are read alike and
new mail goes into the row.
"""

from __future__ import annotations

import dataclasses

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


async def _database_at_0004_with_tickets(settings: Settings) -> None:
    """A database as release 0004 left it: two tickets, the second a follow-up."""
    engine = db.create_engine(settings.database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema._upgrade, "0004")
            await conn.execute(text(
                "INSERT INTO contacts (email, name, role, is_undeliverable,"
                " undeliverable_reason, created_at) VALUES"
                " ('alice@example.org', 'Alice', 'member', false, '', '2026-11-01 10:00:00')"))
            await conn.execute(text(
                "INSERT INTO agents (email, name, is_active, notify_new_ticket,"
                " notify_assignment, notify_reply, notify_status, created_at) VALUES"
                " ('bob@example.com', 'Bob', true, true, true, true, false,"
                " '2026-11-01 10:00:00')"))
            for number, status, followup in ((1, "Closed", None), (2, "Pending", 1)):
                await conn.execute(text(
                    "INSERT INTO tickets (number, subject, status, priority, category, channel,"
                    " queue, requester_id, link_secret, sla_policy, followup_of_id,"
                    " created_at, updated_at) VALUES (:n, 'old', :s, 'normal', 'general',"
                    " 'email', '', 1, 'x', '', :f, '2026-11-01 10:00:00',"
                    " '2026-11-01 10:00:00')"), {"n": number, "s": status, "f": followup})
    finally:
        await engine.dispose()


async def test_a_0004_database_upgrades_tickets_keep_status_and_get_the_default_type(
        settings: Settings) -> None:
    from helpdesk.config import StatusSettings

    await _database_at_0004_with_tickets(settings)
    custom = dataclasses.replace(settings, tickets=dataclasses.replace(
        settings.tickets, default_type="Support", statuses=(
            StatusSettings("New", "active"), StatusSettings("Pending", "paused"),
            StatusSettings("Done", "resolved"), StatusSettings("Closed", "closed"))))
    rt = await Runtime.open(custom)  # upgrades to head with this configuration
    try:
        async with rt.sessions() as session:
            rows = (await session.execute(text(
                "SELECT number, status, type FROM tickets ORDER BY number"))).all()
            statuses = (await session.execute(text(
                "SELECT name, status_class FROM statuses ORDER BY position"))).all()
            links = (await session.execute(text(
                "SELECT ticket_id, kind, other_ticket_id FROM ticket_links"))).all()
            roles = (await session.execute(text("SELECT role FROM agents"))).scalars().all()
        assert [tuple(r) for r in rows] == [(1, "Closed", "Support"), (2, "Pending", "Support")]
        assert [tuple(s) for s in statuses] == [("New", "active"), ("Pending", "paused"),
                                                ("Done", "resolved"), ("Closed", "closed")]
        assert [s.name for s in rt.settings.tickets.statuses] == ["New", "Pending", "Done",
                                                                   "Closed"]
        assert [tuple(x) for x in links] == [(2, "followup", 1)]
        assert roles == ["agent"]
    finally:
        await rt.close()


async def test_without_a_configured_default_old_tickets_become_other(
        settings: Settings) -> None:
    await _database_at_0004_with_tickets(settings)
    rt = await Runtime.open(settings)
    try:
        async with rt.sessions() as session:
            types = (await session.execute(text("SELECT type FROM tickets"))).scalars().all()
        assert types == ["Other", "Other"]
        assert rt.settings.tickets.statuses[0].name == "Open"
    finally:
        await rt.close()


async def test_the_migrated_schema_is_the_models_schema(settings: Settings) -> None:
    """Every table, column and index the models declare, the migrations made, and no more.

    What only a migration makes on purpose is left out: SQLite's FTS5 search tables, and
    on PostgreSQL the generated ``search`` columns with their GIN indexes (migration 0006).
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from helpdesk.models import Base

    rt = await Runtime.open(settings)  # migrates to head
    try:
        def differences(sync_conn) -> list[str]:  # type: ignore[no-untyped-def]
            found = []
            for diff in compare_metadata(MigrationContext.configure(sync_conn), Base.metadata):
                item = diff[0] if isinstance(diff, list) else diff
                kind, obj = item[0], item[1] if len(item) > 1 else None
                name = str(getattr(obj, "name", "") or "")
                if kind == "remove_table" and "_search" in name:
                    continue
                if kind == "remove_index" and name.endswith("_search"):
                    continue
                if kind == "remove_column" and item[3].name == "search":
                    continue
                found.append(f"{kind} {item[1:3]}")
            return found

        async with rt.engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await rt.close()
