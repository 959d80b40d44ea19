"""`helpdesk.direct.run` against ``conn.execute``: the same rows, values and errors.

On the SQLite writer `run` skips SQLAlchemy's execution layer; these tests write the same
parameters both ways and compare what the database holds, byte for byte, and what comes
back. On PostgreSQL (and wherever `run` falls back) they check it is ``conn.execute``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from helpdesk import direct
from helpdesk.models import AuditEvent, Contact, Counter, OutboxRow
from helpdesk.runtime import Runtime

AT = datetime(2026, 11, 23, 10, 30, 15, 123456, tzinfo=UTC)
_NEW_CONTACT = insert(Contact).returning(Contact.id, Contact.email, Contact.created_at,
                                         Contact.is_undeliverable)
_CONTACT = select(Contact.id, Contact.email, Contact.created_at, Contact.is_undeliverable
                  ).where(Contact.email == bindparam("email"))
_BUMP = (update(Counter).where(Counter.name == bindparam("counter"))
         .values(value=Counter.value + 1).returning(Counter.value))


def _outbox(to: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "ack", "template": "acknowledgement", "ticket_id": None, "to_addr": to,
            "recipients": [to, "ünïcode@example.org"], "message_id": f"<{to}>",
            "references": [], "context": {"n": 1, "s": "é", "nested": {"x": [1, None]}},
            "created_at": AT, "next_attempt_at": AT + timedelta(minutes=5), **extra}


def _audit(actor: str, before: Any) -> dict[str, Any]:
    return {"ticket_id": None, "actor": actor, "action": "x", "before": before,
            "after": {"k": [1, 2]}, "reason": "", "created_at": AT}


async def _stored(conn: AsyncConnection, table: str, key: str, value: str,
                  differ: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row as the database holds it, less the columns whose parameters differ."""
    result = await conn.execute(text(f"SELECT * FROM {table} WHERE {key} = :v"), {"v": value})
    return {k: v for k, v in result.one()._mapping.items() if k not in ("id", key, *differ)}


async def test_rows_written_by_run_are_the_rows_conn_execute_writes(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        await direct.run(conn, insert(OutboxRow), _outbox("direct@example.org"))
        await conn.execute(insert(OutboxRow), _outbox("core@example.org"))
        differ = ("recipients", "message_id")
        ours = await _stored(conn, "outbox", "to_addr", "direct@example.org", differ)
        assert ours == await _stored(conn, "outbox", "to_addr", "core@example.org", differ)
        assert len(ours) > 10
        for before in (None, {"a": "b"}):
            actor = f"direct:{before}"
            await direct.run(conn, insert(AuditEvent), [_audit(actor, before)])
            await conn.execute(insert(AuditEvent), [_audit(f"core:{before}", before)])
            assert await _stored(conn, "audit_events", "actor", actor) == await _stored(
                conn, "audit_events", "actor", f"core:{before}")


async def test_json_and_datetimes_read_back_as_written(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        await direct.run(conn, insert(OutboxRow), _outbox("a@example.org"))
        row = (await conn.execute(select(OutboxRow).where(OutboxRow.to_addr == "a@example.org"))
               ).one()
        assert row.message_id == "<a@example.org>"
        assert row.recipients == ["a@example.org", "ünïcode@example.org"]
        assert row.context == {"n": 1, "s": "é", "nested": {"x": [1, None]}}
        assert row.created_at == AT and row.next_attempt_at == AT + timedelta(minutes=5)


async def test_a_remembered_datetime_is_written_as_each_new_one_is(runtime: Runtime) -> None:
    """The datetime bind processor remembers its last value: the same object again, an
    equal one, another one, and another time zone must all be stored as SQLAlchemy would."""
    later = AT + timedelta(seconds=1)
    same_instant = AT.astimezone(timezone(timedelta(hours=5)))
    cases = [AT, AT, later, AT, same_instant, later]
    async with runtime.engine.begin() as conn:
        for i, at in enumerate(cases):
            await direct.run(conn, insert(AuditEvent), [_audit(f"d{i}", None) | {"created_at": at}])
            await conn.execute(insert(AuditEvent), [_audit(f"c{i}", None) | {"created_at": at}])
        stored = (await conn.execute(text(
            "SELECT actor, created_at FROM audit_events ORDER BY id"))).all()
    by_actor = dict(stored)  # type: ignore[arg-type]
    for i, at in enumerate(cases):
        assert by_actor[f"d{i}"] == by_actor[f"c{i}"]
        if isinstance(by_actor[f"d{i}"], str):  # SQLite's text; PostgreSQL's timestamptz
            assert by_actor[f"d{i}"].startswith(at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


async def test_returned_and_selected_rows_match_conn_execute(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        made = (await direct.run(conn, _NEW_CONTACT, {
            "email": "a@example.org", "name": "A", "role": "member",
            "is_undeliverable": True, "undeliverable_reason": "", "created_at": AT})).one()
        assert made.email == "a@example.org" and made.created_at == AT
        assert made.is_undeliverable is True
        ours = (await direct.run(conn, _CONTACT, {"email": "a@example.org"})).one()
        theirs = (await conn.execute(_CONTACT, {"email": "a@example.org"})).one()
        assert tuple(ours) == tuple(theirs) == tuple(made)
        assert ours.created_at.tzinfo is not None
        assert (await direct.run(conn, _CONTACT, {"email": "none@example.org"})
                ).one_or_none() is None


async def test_python_side_defaults_are_filled_in(runtime: Runtime) -> None:
    before = datetime.now(UTC)
    async with runtime.engine.begin() as conn:
        made = (await direct.run(conn, _NEW_CONTACT, {"email": "d@example.org"})).one()
    assert made.is_undeliverable is False
    assert before <= made.created_at <= datetime.now(UTC)


async def test_literals_bound_in_the_statement_are_used(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(insert(Counter), {"name": "t", "value": 41})
        assert (await direct.run(conn, _BUMP, {"counter": "t"})).scalar_one() == 42
        assert (await direct.run(conn, _BUMP, {"counter": "t"})).scalar_one() == 43
        assert (await direct.run(conn, _BUMP, {"counter": "none"})).scalar_one_or_none() is None


async def test_a_constraint_failure_is_sqlalchemys_integrity_error(runtime: Runtime) -> None:
    async with runtime.engine.connect() as conn:
        await conn.begin()
        await direct.run(conn, _NEW_CONTACT, {"email": "x@example.org"})
        savepoint = await conn.begin_nested()
        with pytest.raises(IntegrityError):
            await direct.run(conn, _NEW_CONTACT, {"email": "x@example.org"})
        await savepoint.rollback()
        await direct.run(conn, _NEW_CONTACT, {"email": "y@example.org"})
        await conn.commit()
    async with runtime.engine.connect() as conn:
        emails = (await conn.execute(select(Contact.email).order_by(Contact.email))).scalars()
        assert list(emails) == ["x@example.org", "y@example.org"]


async def test_on_the_sqlite_writer_it_runs_directly(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        result = await direct.run(conn, _CONTACT, {"email": "a@example.org"})
        expanding = await direct.run(conn, select(Contact.id).where(
            Contact.email.in_(bindparam("emails", expanding=True))), {"emails": ["a", "b"]})
    assert isinstance(expanding, CursorResult)  # IN lists: SQLAlchemy renders them per call
    if runtime.engine.dialect.name == "sqlite":
        assert not isinstance(result, CursorResult)
    else:
        assert isinstance(result, CursorResult)


async def test_outside_a_transaction_it_is_conn_execute(runtime: Runtime) -> None:
    async with runtime.engine.connect() as conn:
        result = await direct.run(conn, _CONTACT, {"email": "a@example.org"})
        assert isinstance(result, CursorResult)
        await conn.rollback()


async def test_a_sessions_connection_is_kept_for_its_transaction_only(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        async with session.begin():
            first = await direct.connection(session)
            assert await direct.connection(session) is first
            assert first.sync_connection is (await session.connection()).sync_connection
            await direct.run(first, _NEW_CONTACT, {"email": "kept@example.org"})
            for outcome in ("rolled back", "released"):
                nested = await session.begin_nested()
                inner = await direct.connection(session)  # the SAVEPOINT is emitted here
                await direct.run(inner, _NEW_CONTACT, {"email": f"{outcome}@example.org"})
                await (nested.rollback() if outcome == "rolled back" else nested.commit())
        async with session.begin():
            again = await direct.connection(session)
            assert again.sync_connection is (await session.connection()).sync_connection
            emails = (await direct.run(again, select(Contact.email).order_by(Contact.email))
                      ).all()
            assert [row.email for row in emails] == ["kept@example.org", "released@example.org"]
