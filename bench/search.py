"""Benchmark: `helpdesk tickets search` over a million messages, on SQLite and PostgreSQL.

    python bench/search.py [--messages 1000000] [--queries 300] [--db sqlite|postgres|both]
                           [--pg-dsn postgresql+asyncpg://postgres@127.0.0.1/postgres]
                           [--keep DIR]

``--keep DIR`` keeps the built databases (the SQLite file in DIR, the PostgreSQL database
named after DIR) and measures them again on a later run without building.

Builds a desk with ``--messages`` messages (ten per ticket, a thousand requesters) whose
texts are drawn from a 30,000-word vocabulary with Zipf-like frequencies, as real mail
is: a few words everywhere, most rare. The database's own indexes (migration 0006) are
kept by its triggers or expression indexes as the rows go in, as they are in production.

Then it runs ``--queries`` searches through `helpdesk.search.search` (the code the CLI
and ``#search`` call, 20 tickets a page): one word or two, from the vocabulary's
middle ranks (words a person searches for: neither "the" nor a typo), and prints the
median and 99th percentile. Beside it, the baseline without an index: the same words
found with ``LIKE '%word%'`` over the message texts (every match counted, as ranking
needs them all), for a few queries.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

VOCABULARY = 30_000
CHUNK = 20_000


def words(seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    out: set[str] = set()
    while len(out) < VOCABULARY:
        out.add("".join(rnd.choice(letters) for _ in range(rnd.randint(3, 11))))
    return sorted(out)


def weights() -> list[float]:
    return [1.0 / (rank + 1) for rank in range(VOCABULARY)]


async def build(url: str, messages: int, tmp: Path) -> tuple[object, float]:
    from helpdesk.config import DatabaseSettings, Settings, StorageSettings
    from helpdesk.runtime import Runtime
    from helpdesk.search import reindex

    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(dir=str(tmp / "data")))
    rt = await Runtime.open(settings)
    async with rt.engine.connect() as conn:
        have = (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one()
    if have >= messages:  # kept from an earlier run
        return rt, 0.0
    vocab, w = words(), weights()
    rnd = random.Random(11)
    start = time.perf_counter()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tickets = max(1, messages // 10)
    async with rt.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO contacts (email, name, role, is_undeliverable, undeliverable_reason,"
            " created_at) VALUES (:e, :n, 'member', false, '', :at)"),
            [{"e": f"user{i}@example{i % 50}.org", "n": f"User {i}", "at": now}
             for i in range(1000)])
    for first in range(0, tickets, CHUNK):
        rows = [{"n": i + 1, "s": " ".join(rnd.choices(vocab, w, k=5)), "r": i % 1000 + 1,
                 "x": uuid.uuid4().hex, "at": now + timedelta(minutes=i)}
                for i in range(first, min(tickets, first + CHUNK))]
        async with rt.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO tickets (number, subject, status, priority, category, type,"
                " channel, queue, requester_id, link_secret, sla_policy, created_at,"
                " updated_at) VALUES (:n, :s, 'Open', 'normal', 'general', 'Other', 'email',"
                " '', :r, :x, '', :at, :at)"), rows)
    for first in range(0, messages, CHUNK):
        rows = [{"t": i // 10 + 1, "x": " ".join(rnd.choices(vocab, w, k=40)),
                 "at": now + timedelta(seconds=i)}
                for i in range(first, min(messages, first + CHUNK))]
        async with rt.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO messages (ticket_id, kind, via, subject, text, full_text,"
                " created_at) VALUES (:t, 'public', 'email', '', :x, '', :at)"), rows)
    async with rt.engine.begin() as conn:  # loaded around the ticket service: index it
        await reindex(conn)
    if rt.engine.dialect.name == "postgresql":
        async with rt.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    return rt, time.perf_counter() - start


def pick_queries(n: int) -> list[str]:
    rnd = random.Random(5)
    middle = words()[200:8000]  # the word at index i has weight 1/(i+1): these are mid-rank
    return [" ".join(rnd.sample(middle, rnd.choice((1, 1, 2)))) for _ in range(n)]


async def measure(rt: object, queries: list[str]) -> list[float]:
    from helpdesk.search import search

    times = []
    async with rt.read_sessions() as session:  # type: ignore[attr-defined]
        for q in queries:
            start = time.perf_counter()
            await search(session, rt.settings, q, limit=20)  # type: ignore[attr-defined]
            times.append((time.perf_counter() - start) * 1000)
    return times


async def like_baseline(rt: object, queries: list[str]) -> list[float]:
    times = []
    async with rt.engine.connect() as conn:  # type: ignore[attr-defined]
        for q in queries:
            word = q.split()[0]
            start = time.perf_counter()
            await conn.execute(text(  # every match, as ranking needs them all
                "SELECT count(DISTINCT ticket_id) FROM messages WHERE text LIKE :w"),
                {"w": f"%{word}%"})
            times.append((time.perf_counter() - start) * 1000)
    return times


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def run(name: str, url: str, args: argparse.Namespace, tmp: Path) -> None:
    rt, built = await build(url, args.messages, tmp)
    try:
        queries = pick_queries(args.queries)
        await measure(rt, queries[:10])  # warm the cache, as a running desk's is
        times = await measure(rt, queries)
        like = await like_baseline(rt, queries[:args.baseline_queries])
        print(f"{name:<9} {args.messages:>9} messages (built in {built:.0f} s): search "
              f"median {statistics.median(times):.1f} ms, p99 {p99(times):.1f} ms, "
              f"max {max(times):.1f} ms over {len(times)} queries; LIKE scan baseline "
              f"median {statistics.median(like):.0f} ms over {len(like)} queries")
    finally:
        await rt.close()  # type: ignore[attr-defined]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--baseline-queries", type=int, default=5)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-dsn", default="postgresql+asyncpg://postgres@127.0.0.1/postgres")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep the built databases here (and reuse them).")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        await measure_all(args, args.keep, f"hd_search_{args.keep.name}", keep=True)
        return
    with tempfile.TemporaryDirectory(prefix="hd-search-") as tmp:
        await measure_all(args, Path(tmp), f"hd_search_{uuid.uuid4().hex[:8]}", keep=False)


async def measure_all(args: argparse.Namespace, folder: Path, pg_name: str, *,
                      keep: bool) -> None:
    if args.db in ("sqlite", "both"):
        await run("sqlite", f"sqlite+aiosqlite:///{folder / 'search.db'}", args, folder)
    if args.db in ("postgres", "both"):
        import asyncpg

        admin = args.pg_dsn.replace("+asyncpg", "")
        conn = await asyncpg.connect(admin)
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", pg_name):
            await conn.execute(f'CREATE DATABASE "{pg_name}"')
        await conn.close()
        try:
            await run("postgres", args.pg_dsn.rsplit("/", 1)[0] + f"/{pg_name}", args, folder)
        finally:
            if not keep:
                conn = await asyncpg.connect(admin)
                await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
                await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
