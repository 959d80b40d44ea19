"""Benchmark: one SLA tick over many open tickets, with none and with 1,000 of them due.

    python bench/sla.py [--backend both|postgres|sqlite] [--postgres-tickets 1000000]
                        [--sqlite-tickets 200000] [--due 1000] [--repeat 5]

Each backend gets a throwaway database (a fresh PostgreSQL database that is dropped
afterwards; a SQLite file in a temporary directory), migrated, then filled with bulk SQL:
N open tickets (one requester, one ``ticket.status`` audit event each), every one with its
``sla_next_at`` in the future. Measured, with the default settings (batch 500):

* ``tick 0 due``: the tick finds nothing (median of ``--repeat`` runs);
* ``tick D due, firing``: D tickets spread over the table are made due; they are long
  past both targets, so the tick fires two breaches each (outbox rows, audit events);
* ``tick D due, recompute``: the same D made due again; nothing left to fire.

The claim checked: the tick's time follows the tickets due, not the tickets open (compare
the figures of both sizes). Prints one table; also the query plan of the due lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from helpdesk.config import Settings, load_settings
from helpdesk.directory import get_or_create_contact
from helpdesk.logs import configure_logging
from helpdesk.runtime import Runtime
from sla_daemon.engine import Engine, tick

PG_ADMIN = os.environ.get("HELPDESK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AT = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday, inside office hours
CREATED = AT - timedelta(days=30)
FUTURE = AT + timedelta(days=1)
PAST = AT - timedelta(minutes=1)


def settings_for(url: str, workdir: Path) -> Settings:
    path = workdir / "bench.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[storage]\ndir = "{workdir / "data"}"\n'
                    '[logging]\nlevel = "WARNING"\n', encoding="utf-8")
    return load_settings(path, environ={})


def _sqlite_ts(base: str, modifier: str | None = None) -> str:
    """SQLite text timestamps exactly as SQLAlchemy writes them (``%Y-%m-%d %H:%M:%S.%f``)."""
    args = base if modifier is None else f"{base}, {modifier}"
    return f"strftime('%Y-%m-%d %H:%M:%S', {args}) || '.000000'"


async def fill(rt: Runtime, n: int) -> float:
    """Insert n open tickets and one status audit event each; returns seconds taken."""
    began = time.perf_counter()
    async with rt.sessions() as session, session.begin():
        requester = await get_or_create_contact(session, "bench@example.org", "Bench")
        params = {"n": n, "rid": requester.id, "created": CREATED, "future": FUTURE}
        if session.get_bind().dialect.name == "postgresql":
            series = "generate_series(1, :n) AS g(x)"
            created = "CAST(:created AS timestamptz)"
            nxt = "CAST(:future AS timestamptz) + (x % 10000) * interval '1 minute'"
            moved = "CAST(:created AS timestamptz) + interval '1 minute'"
            prefix = ""
        else:
            params |= {"created": CREATED.strftime("%Y-%m-%d %H:%M:%S"),
                       "future": FUTURE.strftime("%Y-%m-%d %H:%M:%S")}
            prefix = ("WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g "
                      "WHERE x < :n) ")
            series = "g"
            created = _sqlite_ts(":created")
            nxt = _sqlite_ts(":future", "'+' || (x % 10000) || ' minutes'")
            moved = _sqlite_ts(":created", "'+1 minutes'")
        await session.execute(text(
            f"{prefix}INSERT INTO tickets (number, subject, status, priority, category, "
            "channel, queue, requester_id, link_secret, sla_policy, sla_next_at, created_at, "
            f"updated_at) SELECT x, 'bench ticket ' || x, 'In Progress', 'normal', 'general', "
            f"'email', '', CAST(:rid AS INTEGER), 'secret', 'default', {nxt}, {created}, {created} "
            f"FROM {series}"), params)
        await session.execute(text(
            f"{prefix}INSERT INTO audit_events (ticket_id, actor, action, before, after, "
            f"reason, created_at) SELECT x, 'agent:bench', 'ticket.status', "
            "'{\"status\": \"Open\"}', '{\"status\": \"In Progress\"}', '', "
            f"{moved} FROM {series}"), params)
        await session.execute(text(
            "INSERT INTO counters (name, value) VALUES ('ticket_number', :n)"), {"n": n})
    async with rt.engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    return time.perf_counter() - began


async def make_due(rt: Runtime, n_open: int, due: int) -> None:
    step = max(1, n_open // due)
    async with rt.sessions() as session, session.begin():
        await session.execute(text(
            "UPDATE tickets SET sla_next_at = :past WHERE id % :step = 0 AND id <= :limit"),
            {"past": PAST if session.get_bind().dialect.name == "postgresql"
             else PAST.strftime("%Y-%m-%d %H:%M:%S.%f"), "step": step, "limit": step * due})


async def plan(rt: Runtime) -> str:
    """The query plan of the due lookup, as the database reports it."""
    async with rt.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = await conn.execute(text(
                "EXPLAIN SELECT id FROM tickets WHERE sla_next_at <= :at "
                "ORDER BY sla_next_at, id LIMIT 500 FOR UPDATE SKIP LOCKED"), {"at": AT})
        else:
            rows = await conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT id FROM tickets WHERE sla_next_at <= :at "
                "ORDER BY sla_next_at, id LIMIT 500"),
                {"at": AT.strftime("%Y-%m-%d %H:%M:%S.%f")})
        return " | ".join(str(r[-1]) for r in rows)


async def timed_tick(rt: Runtime, engine: Engine) -> tuple[float, int, int]:
    began = time.perf_counter()
    result = await tick(rt, AT, engine=engine)
    return time.perf_counter() - began, result.tickets, result.breaches


async def run_one(url: str, workdir: Path, n_open: int, due: int, repeat: int) -> dict[str, str]:
    settings = settings_for(url, workdir)
    configure_logging(settings.logging)
    rt = await Runtime.open(settings)
    try:
        engine = Engine(rt.settings)
        fill_s = await fill(rt, n_open)
        zero = [await timed_tick(rt, engine) for _ in range(repeat)]
        assert all(t == 0 for _, t, _ in zero), "nothing should be due"
        await make_due(rt, n_open, due)
        firing, fired_tickets, breaches = await timed_tick(rt, engine)
        await make_due(rt, n_open, due)
        recompute, again, _ = await timed_tick(rt, engine)
        return {
            "backend": rt.engine.dialect.name, "open": f"{n_open:,}", "fill s": f"{fill_s:.1f}",
            "tick 0 due ms": f"{statistics.median(t for t, _, _ in zero) * 1000:.2f}",
            "due": f"{fired_tickets:,}", "breaches": f"{breaches:,}",
            "tick firing ms": f"{firing * 1000:.0f}",
            "tick recompute ms": f"{recompute * 1000:.0f} ({again:,})",
            "plan": await plan(rt),
        }
    finally:
        await rt.close()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def bench_postgres(n_open: int, due: int, repeat: int) -> dict[str, str]:
    name = f"helpdesk_bench_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
        with tempfile.TemporaryDirectory() as tmp:
            return await run_one(f"{url}/{name}", Path(tmp), n_open, due, repeat)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def bench_sqlite(n_open: int, due: int, repeat: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return await run_one(url, Path(tmp), n_open, due, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("both", "postgres", "sqlite"), default="both")
    parser.add_argument("--postgres-tickets", type=int, default=1_000_000)
    parser.add_argument("--sqlite-tickets", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = []
    if args.backend in ("both", "sqlite"):
        results.append(asyncio.run(bench_sqlite(args.sqlite_tickets, args.due, args.repeat)))
    if args.backend in ("both", "postgres"):
        results.append(asyncio.run(bench_postgres(args.postgres_tickets, args.due,
                                                  args.repeat)))
    keys = [k for k in results[0] if k != "plan"]
    widths = {k: max(len(k), *(len(r[k]) for r in results)) for k in keys}
    print("  ".join(k.rjust(widths[k]) for k in keys))
    for r in results:
        print("  ".join(r[k].rjust(widths[k]) for k in keys))
    for r in results:
        print(f"{r['backend']} due lookup plan: {r['plan']}")


if __name__ == "__main__":
    main()
