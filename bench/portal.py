"""Benchmark the portal's ticket page: requests per second and p50/p99 latency under load.

Fills a fresh database with ``--tickets`` tickets (bulk inserts, two public messages and
one internal note each), starts ``helpdesk portal`` as a separate process (one uvicorn
worker, as deployed per role), and has ``--clients`` concurrent HTTP clients fetch
``/t/{token}`` pages of random tickets with valid view links. Run by hand::

    python bench/portal.py                      # SQLite, 100,000 tickets, 50 clients
    python bench/portal.py --postgres           # a throw-away PostgreSQL database
    python bench/portal.py --tickets 10000 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from sqlalchemy import delete, insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helpdesk.config import load_settings  # noqa: E402
from helpdesk.links import LinkSigner, Purpose  # noqa: E402
from helpdesk.models import Agent, Contact, Counter, Message, Ticket  # noqa: E402
from helpdesk.runtime import Runtime  # noqa: E402

PG_ADMIN = os.environ.get("HELPDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CHUNK = 5_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(folder: Path, db_url: str, port: int) -> Path:
    path = folder / "helpdesk.toml"
    path.write_text("\n".join([
        "[database]", f"url = {json.dumps(db_url)}", "pool_size = 20",
        "[storage]", f"dir = {json.dumps(str(folder / 'data'))}",
        "[portal]", 'host = "127.0.0.1"', f"port = {port}",
        f'base_url = "http://127.0.0.1:{port}"', 'secret_key = ["bench-secret"]',
        "[logging]", 'level = "WARNING"', "",
    ]), encoding="utf-8")
    return path


async def fill(rt: Runtime, tickets: int) -> dict[int, str]:
    """Bulk-insert the data set; returns each ticket's link secret by id."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    async with rt.sessions() as session, session.begin():
        await session.execute(insert(Agent), [
            {"id": 1, "email": "agent@support.example.com", "name": "Agent", "is_active": True}])
        await session.execute(insert(Contact), [
            {"id": i, "email": f"customer{i}@example.org", "name": f"Customer {i}",
             "role": "member"} for i in range(1, 1001)])
    link_secrets: dict[int, str] = {}
    message_id = 0
    for start in range(1, tickets + 1, CHUNK):
        ids = range(start, min(start + CHUNK, tickets + 1))
        rows, messages = [], []
        for i in ids:
            link_secrets[i] = secrets.token_hex(16)
            created = now - timedelta(minutes=i)
            rows.append({
                "id": i, "number": i, "subject": f"Printer number {i} is on fire",
                "status": "Open", "priority": "normal", "category": "general",
                "channel": "email", "queue": "", "requester_id": (i % 1000) + 1,
                "link_secret": link_secrets[i], "sla_policy": "", "created_at": created,
                "updated_at": created})
            for kind, agent, text in (
                    ("public", None, "It burns since this morning.\n" * 5),
                    ("public", 1, "We are on our way with a fire extinguisher."),
                    ("internal", 1, "Customer seems calm.")):
                message_id += 1
                messages.append({
                    "id": message_id, "ticket_id": i, "kind": kind,
                    "author_contact_id": None if agent else (i % 1000) + 1,
                    "author_agent_id": agent, "via": "email", "subject": "", "text": text,
                    "full_text": text, "created_at": created})
        async with rt.sessions() as session, session.begin():
            await session.execute(insert(Ticket), rows)
            await session.execute(insert(Message), messages)
    async with rt.sessions() as session, session.begin():
        await session.execute(delete(Counter).where(Counter.name == "ticket"))
        await session.execute(insert(Counter), [{"name": "ticket", "value": tickets}])
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy import text

            for table in ("tickets", "messages", "contacts", "agents"):
                await session.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
            await session.execute(text("ANALYZE"))
    print(f"filled {tickets:,} tickets and {message_id:,} messages "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    return link_secrets


async def wait_ready(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the portal did not answer at {base} within {timeout}s")
            await asyncio.sleep(0.1)


async def load(base: str, tokens: list[str], clients: int, requests: int) -> tuple[
        list[float], collections.Counter[str], float]:
    """``requests`` GETs by ``clients`` concurrent clients; (latencies, errors, seconds)."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    remaining = requests
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            token = random.choice(tokens)
            began = time.perf_counter()
            try:
                response = await client.get(f"{base}/t/{token}")
            except httpx.TransportError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                errors[str(response.status_code)] += 1

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


async def create_pg_database() -> str:
    import asyncpg

    name = f"helpdesk_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="helpdesk-bench-"))
    pg_name = await create_pg_database() if args.postgres else None
    db_url = (PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
              + f"/{pg_name}") if pg_name else f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    port = free_port()
    config = write_config(folder, db_url, port)
    settings = load_settings(config, environ={})
    rt = await Runtime.open(settings)
    server: subprocess.Popen[bytes] | None = None
    try:
        link_secrets = await fill(rt, args.tickets)
        await rt.close()
        signer = LinkSigner.from_settings(settings)  # as the portal under test builds it
        sample = random.sample(sorted(link_secrets), min(args.sample, len(link_secrets)))
        tokens = [signer.sign(Purpose.VIEW, i, (i % 1000) + 1, link_secrets[i])
                  for i in sample]
        server = subprocess.Popen(
            [sys.executable, "-m", "helpdesk", "--config", str(config), "portal"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base)
        await load(base, tokens, args.clients, min(500, args.requests))  # warm-up
        process = psutil.Process(server.pid)
        cpu_before = sum(process.cpu_times()[:2])
        latencies, errors, elapsed = await load(base, tokens, args.clients, args.requests)
        server_cpu = sum(process.cpu_times()[:2]) - cpu_before
        if server.poll() is not None:
            raise SystemExit(f"the portal process exited ({server.returncode}) during the run")
        quantiles = statistics.quantiles(latencies, n=100)
        backend = "PostgreSQL" if pg_name else "SQLite"
        print(f"portal ticket page, {backend}, {args.tickets:,} tickets, "
              f"{args.clients} concurrent clients, {len(latencies):,} requests, "
              f"errors {dict(errors) or 0}, 1 uvicorn process")
        print(f"  server CPU {server_cpu / max(len(latencies), 1) * 1000:.1f} ms per request "
              f"(at most ~{len(latencies) / max(server_cpu, 1e-9):,.0f} req/s per core)")
        load1, _, _ = os.getloadavg()
        print(f"  machine: {os.cpu_count()} CPUs, load average {load1:.1f} "
              "(clients run on the same machine)")
        print(f"  {len(latencies) / elapsed:,.0f} req/s   p50 {quantiles[49] * 1000:.1f} ms   "
              f"p99 {quantiles[98] * 1000:.1f} ms")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if pg_name:
            await rt.close()
            await drop_pg_database(pg_name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--sample", type=int, default=2_000,
                        help="distinct tickets whose pages are requested")
    parser.add_argument("--postgres", action="store_true",
                        help="use a throw-away database on the local PostgreSQL server")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
