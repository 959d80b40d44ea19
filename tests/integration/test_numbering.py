"""Ticket numbers are 1..N with no duplicate and no gap under concurrency, on both databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.audit import Actor
from helpdesk.config import Settings
from helpdesk.directory import get_or_create_contact
from helpdesk.models import Ticket
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from tests.conftest import make_settings, sqlite_url

ACTOR = Actor("system", "test")


async def _numbers(rt: Runtime) -> list[int]:
    async with rt.sessions() as session:
        return sorted((await session.execute(select(Ticket.number))).scalars())


@pytest.mark.postgres
async def test_200_concurrent_creations_on_postgresql_number_1_to_200(
        tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path, pg_url, database={"pool_size": 20})
    rt = await Runtime.open(settings)
    try:
        async def create(i: int) -> None:
            for _ in range(20):
                try:
                    async with rt.sessions() as session, session.begin():
                        svc = TicketService(session, settings)
                        requester = await get_or_create_contact(session, f"c{i % 7}@example.org")
                        await svc.open_ticket(requester=requester, subject=f"t{i}", text="x",
                                              actor=ACTOR)
                        if i % 10 == 0:
                            await asyncio.sleep(0.01)
                    return
                except Exception as exc:  # a deadlock victim retries, as a receiver would
                    if "deadlock" not in str(exc).lower():
                        raise
        await asyncio.gather(*(create(i) for i in range(200)))
        assert await _numbers(rt) == list(range(1, 201))
    finally:
        await rt.close()


async def test_rolled_back_creation_gives_its_number_back(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError):
        async with runtime.sessions() as session, session.begin():
            requester = await get_or_create_contact(session, "a@example.org")
            await TicketService(session, runtime.settings).open_ticket(
                requester=requester, subject="s", text="t", actor=ACTOR)
            raise RuntimeError("rollback")
    async with runtime.sessions() as session, session.begin():
        requester = await get_or_create_contact(session, "a@example.org")
        ticket, _ = await TicketService(session, runtime.settings).open_ticket(
            requester=requester, subject="s", text="t", actor=ACTOR)
    assert ticket.number == 1


@pytest.mark.slow
def test_50_concurrent_ingest_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    # 50 interpreters starting at once on 2 cores: allow the lock waits of a busy machine.
    settings: Settings = make_settings(tmp_path, sqlite_url(tmp_path),
                                       database={"busy_timeout_ms": 240000})
    cfg = tmp_path / "helpdesk.toml"
    env = {**os.environ, "HELPDESK_CONFIG": str(cfg)}
    init = subprocess.run([sys.executable, "-m", "helpdesk", "init"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    procs = []
    for i in range(50):
        mail = (f"From: user{i}@example{i % 5}.org\r\nTo: support@support.example.com\r\n"
                f"Subject: concurrent {i}\r\nMessage-ID: <c{i}@example.org>\r\n\r\nbody {i}\r\n")
        procs.append(subprocess.Popen([sys.executable, "-m", "helpdesk", "ingest"], env=env,
                                      cwd=tmp_path, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        procs[-1].stdin.write(mail.encode())  # type: ignore[union-attr]
        procs[-1].stdin.close()  # type: ignore[union-attr]
    codes = []
    for p in procs:
        p.wait(timeout=600)
        codes.append((p.returncode, p.stderr.read().decode()[-500:]))  # type: ignore[union-attr]
    assert [c for c, _ in codes] == [0] * 50, [e for c, e in codes if c]

    async def check() -> list[int]:
        rt = await Runtime.open(settings, migrate=False)
        try:
            return await _numbers(rt)
        finally:
            await rt.close()
    assert asyncio.run(check()) == list(range(1, 51))
