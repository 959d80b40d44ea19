"""Benchmark: every report section over a big desk, on PostgreSQL and SQLite.

    python bench/report.py [--tickets-pg 1000000] [--tickets-sqlite 200000]
                           [--messages-per-ticket 4] [--db sqlite|postgres|both]
                           [--keep DIR]

Builds the desk inside the database (``generate_series`` on PostgreSQL, a recursive CTE
on SQLite: minutes, not hours), with a year of tickets spread over 1,000 organizations
and 50 agents in every status, priority, type and channel, their messages, SLA clocks
(half met, a tenth breached), ratings for a tenth, reopenings and breach events. Then it
times each section of ``helpdesk report`` (`helpdesk.reports.report`, what the command
runs) over the last 90 days, three times, and prints the best and the median.
``--keep DIR`` keeps the databases for another run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

SECTIONS = ("overview", "trends", "agents", "sla", "csat", "channels", "health")
START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 24 * 60 * 60


def _fill(dialect: str, tickets: int, per: int) -> list[str]:
    """The statements that fill the desk; ``i`` runs over the tickets (and messages)."""
    if dialect == "postgresql":
        def series(n: int) -> str:
            return f"generate_series(1, {n}) AS s(i)"
        ts = "(TIMESTAMPTZ '2026-01-01 00:00:00+00' + make_interval(secs => {m}))"
        tsz = ts
    else:
        def series(n: int) -> str:
            return (f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s "
                    f"WHERE i < {n}) SELECT i FROM s) AS s")
        ts = "datetime('2026-01-01 00:00:00', '+' || ({m}) || ' seconds')"
        tsz = ts
    step = YEAR_SECONDS // tickets  # the tickets spread over the year
    created = ts.format(m=f"(i * {step})")
    statuses = "(ARRAY['Open','In Progress','Pending','On Hold','Resolved','Closed'])"
    if dialect == "postgresql":
        def pick(values: list[str], expr: str) -> str:
            quoted = ",".join(f"'{v}'" for v in values)
            return f"(ARRAY[{quoted}])[({expr}) % {len(values)} + 1]"
    else:
        def pick(values: list[str], expr: str) -> str:
            whens = " ".join(f"WHEN {n} THEN '{v}'" for n, v in enumerate(values))
            return f"(CASE ({expr}) % {len(values)} {whens} END)"
    del statuses
    status = pick(["Open", "In Progress", "Pending", "On Hold", "Resolved", "Closed",
                   "Resolved", "Closed", "Resolved", "Closed"], "i")
    done = "(i % 10 IN (4, 5, 6, 7, 8, 9))"
    stmts = [
        "INSERT INTO organizations (name, domain, created_at) SELECT 'org' || i, "
        f"'org' || i || '.example', {tsz.format(m='0')} FROM {series(1000)}",
        "INSERT INTO contacts (email, name, organization_id, role, is_undeliverable, "
        "undeliverable_reason, created_at) SELECT 'c' || i || '@org' || (i % 1000 + 1) || "
        f"'.example', 'C ' || i, i % 1000 + 1, 'member', false, '', {tsz.format(m='0')} "
        f"FROM {series(10000)}",
        "INSERT INTO agents (email, name, is_active, notify_new_ticket, notify_assignment, "
        "notify_reply, notify_status, notify_board, role, created_at) SELECT 'a' || i || "
        f"'@support.example', 'Agent ' || i, true, true, true, true, false, true, 'agent', "
        f"{tsz.format(m='0')} FROM {series(50)}",
        "INSERT INTO tickets (number, subject, status, priority, category, type, channel, "
        "queue, requester_id, assignee_id, organization_id, link_secret, sla_policy, "
        "first_response_at, resolved_at, created_at, updated_at) SELECT i, 'ticket ' || i, "
        f"{status}, {pick(['low', 'normal', 'high', 'urgent', 'critical'], 'i / 10')}, "
        f"{pick(['general', 'billing', 'technical', 'account'], 'i / 7')}, "
        f"{pick(['Bug', 'Question', 'Feature Request', 'Change Request', 'Support', 'Billing', 'Other'], 'i / 3')}, "  # noqa: E501
        f"{pick(['email', 'web', 'phone', 'chat', 'internal'], 'i / 11')}, '', "
        "i % 10000 + 1, CASE WHEN i % 13 = 0 THEN NULL ELSE i % 50 + 1 END, "
        "(i % 10000) % 1000 + 1, 'x', 'default', "
        f"CASE WHEN i % 17 = 0 THEN NULL ELSE {ts.format(m=f'(i * {step} + (i % 300 + 1) * 60)')} END, "  # noqa: E501
        f"CASE WHEN {done} THEN {ts.format(m=f'(i * {step} + (i % 5000 + 60) * 60)')} END, "
        f"{created}, {created} FROM {series(tickets)}",
        "INSERT INTO messages (ticket_id, kind, author_agent_id, via, subject, text, "
        "full_text, created_at) SELECT i / " + str(per) + " + 1, "
        f"{pick(['public', 'public', 'internal', 'public'], 'i')}, "
        "CASE WHEN i % 2 = 0 THEN i % 50 + 1 END, 'email', '', 'reply ' || i, '', "
        f"{ts.format(m=f'((i / {per}) * {step} + i % {per} * 1800)')} "
        f"FROM {series(tickets * per - per)}",
        "INSERT INTO sla_clocks (ticket_id, kind, target_minutes, elapsed_minutes, met_at, "
        "warned, breached) SELECT i, 'first_response', 240, i % 400, "
        f"CASE WHEN i % 2 = 0 THEN {created} END, i % 10 = 1, i % 10 = 1 "
        f"FROM {series(tickets)}",
        "INSERT INTO sla_clocks (ticket_id, kind, target_minutes, elapsed_minutes, met_at, "
        "warned, breached) SELECT i, 'resolution', 2400, i % 3000, "
        f"CASE WHEN {done} THEN {created} END, i % 20 = 1, i % 20 = 1 "
        f"FROM {series(tickets)}",
        "INSERT INTO csat_ratings (ticket_id, contact_id, score, comment, created_at, "
        f"updated_at) SELECT i, i % 10000 + 1, i % 5 + 1, CASE WHEN i % 7 = 0 THEN 'ok' "
        f"ELSE '' END, {created}, {created} FROM {series(tickets)} WHERE i % 10 = 4",
        "INSERT INTO audit_events (ticket_id, actor, action, before, after, reason, "
        "created_at) SELECT i, 'system:sla', 'sla.breach', NULL, NULL, '', "
        f"{created} FROM {series(tickets)} WHERE i % 10 = 1",
        "INSERT INTO audit_events (ticket_id, actor, action, before, after, reason, "
        "created_at) SELECT i, 'contact:x', 'ticket.status', '{\"status\": \"Resolved\"}', "
        f"'{{\"status\": \"Open\"}}', '', {created} FROM {series(tickets)} WHERE i % 25 = 0",
    ]
    return stmts


async def build(url: str, tickets: int, per: int, folder: Path) -> tuple[object, float]:
    from helpdesk.config import DatabaseSettings, Settings, StorageSettings
    from helpdesk.runtime import Runtime

    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(dir=str(folder / "data")))
    rt = await Runtime.open(settings)
    async with rt.engine.connect() as conn:
        have = (await conn.execute(text("SELECT count(*) FROM tickets"))).scalar_one()
    if have >= tickets:
        return rt, 0.0
    start = time.perf_counter()
    for stmt in _fill(rt.engine.dialect.name, tickets, per):
        async with rt.engine.begin() as conn:
            await conn.execute(text(stmt))
    async with rt.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return rt, time.perf_counter() - start


async def run(name: str, url: str, tickets: int, per: int, folder: Path) -> None:
    from helpdesk.reports import Scope, report

    rt, built = await build(url, tickets, per, folder)
    until = START + timedelta(days=365)
    scope = Scope(until - timedelta(days=90), until)
    try:
        print(f"{name}: {tickets} tickets, {tickets * per} messages "
              f"(built in {built:.0f} s); each section over 90 days, 3 runs:")
        for section in SECTIONS:
            times = []
            for _ in range(3):
                begin = time.perf_counter()
                async with rt.read_sessions() as session:  # type: ignore[attr-defined]
                    await report(session, rt.settings, section, scope)  # type: ignore[attr-defined]
                times.append(time.perf_counter() - begin)
            print(f"  {section:<9} best {min(times):6.2f} s  median "
                  f"{statistics.median(times):6.2f} s")
    finally:
        await rt.close()  # type: ignore[attr-defined]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets-pg", type=int, default=1_000_000)
    parser.add_argument("--tickets-sqlite", type=int, default=200_000)
    parser.add_argument("--messages-per-ticket", type=int, default=4)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-dsn", default="postgresql+asyncpg://postgres@127.0.0.1/postgres")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hd-report-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        per = args.messages_per_ticket
        if args.db in ("sqlite", "both"):
            await run("sqlite", f"sqlite+aiosqlite:///{folder / 'report.db'}",
                      args.tickets_sqlite, per, folder)
        if args.db in ("postgres", "both"):
            import asyncpg

            name = f"hd_report_{folder.name}".replace("-", "_")
            admin = args.pg_dsn.replace("+asyncpg", "")
            conn = await asyncpg.connect(admin)
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.close()
            try:
                await run("postgres", args.pg_dsn.rsplit("/", 1)[0] + f"/{name}",
                          args.tickets_pg, per, folder)
            finally:
                if args.keep is None:
                    conn = await asyncpg.connect(admin)
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
