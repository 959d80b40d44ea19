"""The gateway's Core writer leaves exactly the rows the TicketService path leaves.

The same mails, in the same order, with the same clock and the same random tokens, go
through a gateway with the Core writer and through one without it, each into a database
of its own; then every table of the two is compared row by row, ids included. The mails
cover both cases the writer takes (new tickets, participants' replies, with attachments,
agent notices, acknowledgements and their hourly limit) and the cases it must hand back
(agents, CC watchers, paused, resolved and closed tickets, strangers quoting a token),
and on SQLite every mail of the shared corpus too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.audit import SYSTEM
from helpdesk.directory import add_agent, find_agent
from helpdesk.models import Base, Ticket
from helpdesk.notify import Notifier
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from mailgate.ingest import Gateway
from tests.conftest import PG_ADMIN_DSN, _pg_admin, make_settings, port_open, require

RCPT = "support@support.example.com"
T0 = datetime(2031, 1, 6, 9, 0, tzinfo=UTC)  # the runtime's clock; column defaults are earlier


@functools.cache  # the same bytes for both runs: a MIME boundary is random
def mail(i: int, sender: str, subject: str, *, reply_to: str | None = None,
         cc: str | None = None, attach: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = RCPT
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = f"<m{i}@example.org>"
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    if reply_to:
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    msg.set_content(f"Hello,\n\nmail {i}.\n\n> quoted line\n\n-- \nsignature\n")
    if attach:
        msg.add_attachment(b"%PDF-1.4 " + bytes([i % 256]) * 300, maintype="application",
                           subtype="pdf", filename=f"file{i}.pdf")
    return msg.as_bytes()


async def scenario(rt: Runtime, gateway: Gateway) -> list[str]:
    """Feed one run of mails and ticket changes; returns what each mail became."""
    out: list[str] = []

    async def send(raw: bytes) -> None:
        rt.clock.tick()  # type: ignore[attr-defined]
        r = await gateway.ingest(raw, "smtp", recipients=[RCPT])
        out.append(f"{r.disposition} {r.ticket} {r.reason}")

    async def change(number: int, work: Callable[[TicketService, Ticket], Any]) -> None:
        async with rt.sessions() as session, session.begin():
            service = TicketService(session, rt.settings, clock=rt.clock,
                                    listeners=[Notifier(rt)])
            await work(service, await service.get(number))

    async with rt.sessions() as session, session.begin():
        await add_agent(session, "ann@support.example.com", "Ann")
        bob = await add_agent(session, "bob@support.example.com", "Bob")
        bob.notify_reply = False
    await send(mail(1, "Carol <carol@acme.test>", "printer on fire"))
    await send(mail(2, "dave@acme.test", "Re: printer", reply_to="<m1@example.org>"))  # org
    await send(mail(3, "Carol <carol@acme.test>", "Re: [TKT-000001] more", attach=True))
    await send(mail(4, "eve@gmail.com", "Re: [TKT-000001]"))  # stranger: new ticket
    await send(mail(5, "eve@gmail.com", "second", cc="frank@other.test"))  # watcher: ORM
    await send(mail(6, "ann@support.example.com", "Re: [TKT-000001] #status pending"))
    await send(mail(7, "carol@acme.test", "Re: printer", reply_to="<m1@example.org>"))

    async def assign(service: TicketService, ticket: Ticket) -> None:
        await service.assign(ticket, await find_agent(service.session, "ann@support.example.com"),
                             SYSTEM)
        await service.set_status(ticket, "In Progress", SYSTEM)

    await change(2, assign)
    await send(mail(8, "eve@gmail.com", "Re: TKT-2 thanks", attach=True))
    await send(mail(9, "eve@gmail.com", "Re: TKT-2", reply_to="<m4@example.org>"))

    async def resolve(service: TicketService, ticket: Ticket) -> None:
        await service.set_status(ticket, "Resolved", SYSTEM)

    await change(2, resolve)
    await send(mail(10, "eve@gmail.com", "Re: TKT-2 not fixed"))  # reopens: ORM path

    async def close(service: TicketService, ticket: Ticket) -> None:
        await service.set_status(ticket, "Closed", SYSTEM)

    await change(2, close)
    await send(mail(11, "eve@gmail.com", "Re: TKT-2 again"))  # follow-up ticket: ORM path
    for i in range(12, 40):  # one sender past the hourly acknowledgement limit
        await send(mail(i, "Grace <grace@flood.test>", f"question {i}", attach=i % 5 == 0))
    auto = mail(40, "robot@acme.test", "Out of office").replace(
        b"Subject:", b"Auto-Submitted: auto-replied\nSubject:")
    await send(auto)
    await send(mail(1, "Carol <carol@acme.test>", "printer on fire"))  # duplicate
    return out


def deterministic_tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """``secrets.token_hex`` counts instead of drawing; the returned call restarts it."""
    counter = iter(range(10**9))

    def token_hex(n: int = 32) -> str:
        return f"{next(counter):0{2 * n}x}"[-2 * n:]

    def restart() -> None:
        nonlocal counter
        counter = iter(range(10**9))

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    return restart


class Clock:
    """Stands still while a mail is applied (both paths read it a different number of
    times); moves on a second with each `tick`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(seconds=1)


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
        return
    name = f"helpdesk_test_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://").rsplit(
            "/", 1)[0] + f"/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(kind: str, tmp_path: Path, core: bool,
              feed: Callable[[Runtime, Gateway], Any]) -> tuple[Any, dict[str, list[Any]]]:
    tmp_path.mkdir()
    async with database(kind, tmp_path) as url:
        clock = Clock()
        rt = await Runtime.open(make_settings(tmp_path, url), clock=clock)
        try:
            gateway = Gateway(rt, listeners=[Notifier(rt)], core_writer=core)
            outcome = await feed(rt, gateway)
            tables = {}
            async with rt.sessions() as session:
                for table in Base.metadata.sorted_tables:
                    rows = await session.execute(select(table).order_by(*table.primary_key))
                    tables[table.name] = [tuple(_clocked(v) for v in r) for r in rows]
        finally:
            await rt.close()
    return outcome, tables


def _clocked(value: Any) -> Any:
    """Times from the runtime's clock as they are; column defaults (wall clock) as a marker."""
    return "<column default>" if isinstance(value, datetime) and value < T0 else value


def assert_same(orm: dict[str, list[Any]], core: dict[str, list[Any]]) -> None:
    for name in orm:
        for i, (a, b) in enumerate(zip(orm[name], core[name], strict=False)):
            assert a == b, f"{name} row {i}: ORM path {a} != Core writer {b}"
        assert len(orm[name]) == len(core[name]), name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "postgres":
        require(port_open("127.0.0.1", 5432), "PostgreSQL is not running on 127.0.0.1:5432")
    yield request.param


async def both_paths(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     feed: Callable[[Runtime, Gateway], Any]) -> tuple[Any, dict[str, Any]]:
    """``feed`` through the ORM path and through the Core writer; asserts both left the
    same outcomes and rows, and returns the Core writer's."""
    restart = deterministic_tokens(monkeypatch)
    orm_out, orm = await run(kind, tmp_path / "orm", False, feed)
    restart()
    core_out, core = await run(kind, tmp_path / "core", True, feed)
    assert core_out == orm_out
    assert_same(orm, core)
    return core_out, core


async def test_core_writer_leaves_the_rows_of_the_orm_path(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core_out, core = await both_paths(kind, tmp_path, monkeypatch, scenario)
    # the scenario reaches what it means to: both paths, notices, the hourly limit
    assert sum(1 for row in core["outbox"] if row[1] == "agent_notice") >= 10
    assert len(core["tickets"]) == 33 and len(core["watchers"]) == 1
    assert [o.split()[0] for o in core_out].count("reply") == 6
    assert sum(1 for row in core["audit_events"] if "ack.suppressed" in row) > 10


async def batched_scenario(rt: Runtime, gateway: Gateway) -> list[str]:
    """Mails that arrive together and share group-commit batches, so that the Core
    writer's deferred rows are still unwritten when a later mail of the batch needs them:
    a reply to a mail of the same batch, a second copy of one, acknowledgements to one
    address past the hourly limit, and mails that take the ORM path between them."""
    out: list[str] = []

    async def together(*raws: bytes) -> None:
        rt.clock.tick()  # type: ignore[attr-defined]
        # No attachments: each mail reaches the batch without waiting, so in this order.
        results = await asyncio.gather(*(gateway.ingest(raw, "smtp", recipients=[RCPT])
                                         for raw in raws))
        out.extend(f"{r.disposition} {r.ticket} {r.reason}" for r in results)

    async with rt.sessions() as session, session.begin():
        await add_agent(session, "ann@support.example.com", "Ann")
    await together(
        mail(1, "Carol <carol@acme.test>", "printer on fire"),
        mail(1, "Carol <carol@acme.test>", "printer on fire"),  # its second copy
        mail(2, "dave@acme.test", "Re: printer", reply_to="<m1@example.org>"),  # same batch
        mail(3, "eve@gmail.com", "with a watcher", cc="frank@other.test"),  # ORM path
        mail(4, "carol@acme.test", "Re: printer", reply_to="<m2@example.org>"),
        mail(5, "ann@support.example.com", "Re: [TKT-000001] #status pending"),  # agent's
        mail(6, "carol@acme.test", "Re: printer", reply_to="<m1@example.org>"),
    )
    await together(*(mail(i, "Grace <grace@flood.test>", f"question {i}")
                     for i in range(10, 40)))  # past the hourly limit within batches
    await together(
        mail(40, "eve@gmail.com", "Re: [TKT-000003] thanks"),
        mail(41, "eve@gmail.com", "Re: thanks", reply_to="<m40@example.org>"),
        mail(10, "Grace <grace@flood.test>", "question 10"),  # a copy from an earlier batch
    )
    return out


async def test_core_writer_leaves_the_rows_of_the_orm_path_when_mails_share_a_batch(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core_out, core = await both_paths(kind, tmp_path, monkeypatch, batched_scenario)
    dispositions = [o.split()[0] for o in core_out]
    assert dispositions[:3] == ["ticket", "duplicate", "reply"]
    assert core_out[1].endswith("(ticket)")  # the first copy's outcome, though deferred
    assert dispositions[-2:] == ["reply", "duplicate"]
    acks_to_grace = [row for row in core["outbox"] if row[1] == "ack"
                     and "grace@flood.test" in str(row)]
    assert 0 < len(acks_to_grace) < 30  # the limit held inside a batch


async def test_a_failing_mail_in_a_batch_leaves_the_same_rows_on_both_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One mail of a batch fails: the batch runs again a SAVEPOINT per mail, where each
    Core-written mail's deferred rows are written inside its own savepoint."""
    import mailgate.ingest

    real = mailgate.ingest.classify

    def classify(msg: Any, **kw: Any) -> Any:
        if msg.subject == "poison":
            raise RuntimeError("a bug that this one mail meets")
        return real(msg, **kw)

    monkeypatch.setattr(mailgate.ingest, "classify", classify)

    async def feed(rt: Runtime, gateway: Gateway) -> list[str]:
        rt.clock.tick()  # type: ignore[attr-defined]
        raws = [mail(1, "carol@acme.test", "first"),
                mail(2, "dave@acme.test", "Re: first", reply_to="<m1@example.org>"),
                mail(3, "eve@gmail.com", "poison"),
                mail(4, "carol@acme.test", "Re: first", reply_to="<m1@example.org>"),
                mail(5, "grace@flood.test", "last")]
        results = await asyncio.gather(*(gateway.ingest(raw, "smtp", recipients=[RCPT])
                                         for raw in raws))
        return [f"{r.disposition} {r.ticket} {r.reason}" for r in results]

    core_out, core = await both_paths("sqlite", tmp_path, monkeypatch, feed)
    assert [o.split()[0] for o in core_out] == [
        "ticket", "reply", "quarantined", "reply", "ticket"]
    assert len(core["audit_events"]) >= 6


async def test_core_writer_matches_on_every_corpus_mail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path) -> None:
    entries = [json.loads(line) for line in (corpus / "expected.jsonl").read_text().splitlines()]

    async def feed(rt: Runtime, gateway: Gateway) -> list[str]:
        async with rt.sessions() as session, session.begin():
            await add_agent(session, "ann@support.example.com", "Ann")
        out = []
        for entry in entries:
            rt.clock.tick()  # type: ignore[attr-defined]
            r = await gateway.ingest((corpus / entry["file"]).read_bytes(), "pipe")
            out.append(f"{entry['file']}: {r.disposition} {r.ticket} {r.reason}")
        return out

    restart = deterministic_tokens(monkeypatch)
    orm_out, orm = await run("sqlite", tmp_path / "orm", False, feed)
    restart()
    core_out, core = await run("sqlite", tmp_path / "core", True, feed)
    assert core_out == orm_out
    assert_same(orm, core)


async def test_concurrent_mail_through_the_core_writer_makes_one_entry_each(
        tmp_path: Path) -> None:
    """Eight callers at once share group-commit batches; every mail is one row each way."""
    rt = await Runtime.open(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
    try:
        gateway = Gateway(rt, listeners=[Notifier(rt)])
        firsts = [mail(i, f"c{i % 40}@example{i % 7}.test", f"q {i}") for i in range(200)]
        replies = [mail(1000 + i, f"c{i % 40}@example{i % 7}.test", "Re: q",
                        reply_to=f"<m{i}@example.org>") for i in range(60)]
        for batch in (firsts + firsts[:20], replies):
            results = await asyncio.gather(*(gateway.ingest(m, "smtp", recipients=[RCPT])
                                             for m in batch))
            assert len({r.spool_id for r in results}) == len(set(batch))
        assert [r.disposition for r in results] == ["reply"] * 60
        async with rt.sessions() as session:
            numbers = (await session.execute(select(Ticket.number))).scalars().all()
        assert sorted(numbers) == list(range(1, 201))
    finally:
        await rt.close()
