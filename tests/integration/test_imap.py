"""The IMAP poller against a real Dovecot: exactly-once ingest, moves, restarts, the lease."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import func, select

from helpdesk.config import Settings
from helpdesk.errors import TransientError
from helpdesk.models import ImapState, InboundSpool, Message, Ticket
from helpdesk.runtime import Runtime
from mailgate import _imap_lease as lease
from mailgate.imap import ImapPoller, PollerTuning, backoff_delay, mailbox_key, message_ids
from mailgate.ingest import Gateway, IngestResult, dedupe_key
from mailgate.service import make_gateway
from mailgate.smtp import start_smtp
from tests.conftest import make_settings, sqlite_url
from tests.fixtures.dovecot import DovecotServer

pytest_plugins = ["tests.fixtures.dovecot"]

FAST = PollerTuning(backoff_initial=0.05, backoff_cap=0.4, lease_seconds=3.0,
                    command_timeout=5.0)
PROCESSED = "Processed"


def mail(n: int, tag: str = "m", sender: str | None = None, body: str = "") -> bytes:
    """A distinct customer mail: its own sender, subject and Message-ID."""
    return (
        f"From: Customer {n} <{sender or f'customer{n}-{tag}@example.com'}>\r\n"
        "To: support@support.example.com\r\n"
        f"Subject: Problem {tag}-{n}\r\n"
        f"Message-ID: <{tag}-{n}@example.com>\r\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0000\r\n"
        "\r\n"
        f"{body or f'Please help with problem {tag}-{n}.'}\r\n"
    ).encode()


def imap_config(dovecot: DovecotServer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": dovecot.host, "port": dovecot.port, "ssl": False,
        "username": dovecot.user, "password": dovecot.password, "folder": "INBOX",
        "processed_folder": PROCESSED, "poll_interval": 0.5,
    }
    config.update(overrides)
    return config


def settings_for(tmp_path: Path, dovecot: DovecotServer, db_url: str | None = None,
                 **overrides: Any) -> Settings:
    return make_settings(tmp_path, db_url or sqlite_url(tmp_path),
                         imap=[imap_config(dovecot, **overrides)])


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[Settings], Awaitable[Runtime]]]:
    runtimes: list[Runtime] = []

    async def open_runtime(settings: Settings) -> Runtime:
        rt = await Runtime.open(settings)
        runtimes.append(rt)
        return rt

    yield open_runtime
    for rt in runtimes:
        await rt.close()


class Running:
    """Pollers started as tasks, stopped (and checked for crashes) on exit."""

    def __init__(self, *pollers: ImapPoller) -> None:
        self.pollers = pollers
        self.stops = [asyncio.Event() for _ in pollers]
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Running:
        self.tasks = [asyncio.create_task(p.run(s)) for p, s in zip(self.pollers, self.stops,
                                                                     strict=True)]
        return self

    async def stop(self, index: int) -> None:
        self.stops[index].set()
        await asyncio.wait_for(self.tasks[index], timeout=10)

    async def __aexit__(self, *exc: object) -> None:
        for event in self.stops:
            event.set()
        done, pending = await asyncio.wait(self.tasks, timeout=10)
        assert not pending, "a poller did not stop within 10 s of being told to"
        for task in done:
            assert task.exception() is None, f"a poller crashed: {task.exception()!r}"


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def count(rt: Runtime, column: Any, *where: Any) -> int:
    async with rt.sessions() as session:
        return int((await session.execute(select(func.count(column)).where(*where))).scalar_one())


async def folder_count(dovecot: DovecotServer, folder: str) -> int:
    try:
        return await asyncio.to_thread(dovecot.count, folder)
    except RuntimeError:  # folder not created yet
        return 0


def in_folder(dovecot: DovecotServer, folder: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await folder_count(dovecot, folder) >= n
    return check


class CountingGateway(Gateway):
    """The real pipeline, counting calls per message (and failing some on purpose)."""

    def __init__(self, rt: Runtime, fail_first: Sequence[bytes] = ()) -> None:
        super().__init__(rt)
        self.calls: Counter[str] = Counter()
        self.failing = {dedupe_key(raw)[0] for raw in fail_first}

    async def ingest(self, raw: bytes, via: str, *, recipients: Sequence[str] = (),
                     **kwargs: Any) -> IngestResult:
        key = dedupe_key(raw)[0]
        self.calls[key] += 1
        if key in self.failing:
            self.failing.discard(key)
            raise TransientError("database busy (test)")
        return await super().ingest(raw, via, recipients=recipients, **kwargs)


class QuarantiningGateway(Gateway):
    """The real pipeline, except that one given message comes back quarantined."""

    def __init__(self, rt: Runtime, bad: bytes) -> None:
        super().__init__(rt)
        self.bad_key = dedupe_key(bad)[0]

    async def ingest(self, raw: bytes, via: str, *, recipients: Sequence[str] = (),
                     **kwargs: Any) -> IngestResult:
        if dedupe_key(raw)[0] == self.bad_key:
            return IngestResult("quarantined", 0, None, "unparseable (test)")
        return await super().ingest(raw, via, recipients=recipients, **kwargs)


class SlowGateway(Gateway):
    """The real pipeline, slow for one message (so that later ones could overtake it)."""

    def __init__(self, rt: Runtime, slow: bytes) -> None:
        super().__init__(rt)
        self.slow_key = dedupe_key(slow)[0]

    async def ingest(self, raw: bytes, via: str, *, recipients: Sequence[str] = (),
                     **kwargs: Any) -> IngestResult:
        if dedupe_key(raw)[0] == self.slow_key:
            await asyncio.sleep(0.5)
        return await super().ingest(raw, via, recipients=recipients, **kwargs)


# -- acceptance ----------------------------------------------------------------------------

@pytest.mark.dovecot
async def test_400_messages_before_and_during_polling_become_entries_exactly_once(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, poll_interval=5.0))
    gateway = CountingGateway(rt)
    poller = ImapPoller(gateway, rt.settings.imap[0], tuning=FAST)
    for n in range(200):
        dovecot.deliver(mail(n, "before"))
    started = time.monotonic()
    async with Running(poller):
        for n in range(200):
            await asyncio.to_thread(dovecot.deliver, mail(n, "during"))
            if n % 20 == 0:
                await asyncio.sleep(0.05)
        await wait_until(in_folder(dovecot, PROCESSED, 400), 90, "400 messages in Processed")
    elapsed = time.monotonic() - started

    assert await folder_count(dovecot, PROCESSED) == 400
    assert await folder_count(dovecot, "INBOX") == 0
    assert await count(rt, InboundSpool.id) == 400
    assert await count(rt, InboundSpool.id, InboundSpool.status.in_(("ticket", "reply"))) == 400
    assert await count(rt, Ticket.id) == 400
    assert await count(rt, Message.id, Message.spool_id.is_not(None)) == 400
    assert set(gateway.calls.values()) == {1}, "a message was fetched and ingested twice"
    assert poller.stats.by_disposition == {"ticket": 400}
    print(f"\nIMAP ingest: 400 messages in {elapsed:.1f}s = {400 / elapsed:.0f} msg/s")


@pytest.mark.dovecot
@pytest.mark.parametrize("graceful", [True, False], ids=["restart", "kill"])
async def test_dovecot_restart_mid_stream_loses_nothing(
        tmp_path: Path, dovecot: DovecotServer, opened: Any, graceful: bool) -> None:
    rt = await opened(settings_for(tmp_path, dovecot))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=FAST)
    for n in range(120):
        dovecot.deliver(mail(n, "a"))
    with structlog.testing.capture_logs() as logs:
        async with Running(poller):
            await wait_until(in_folder(dovecot, PROCESSED, 20), 30, "the first 20 processed")
            await asyncio.to_thread(dovecot.restart, graceful)
            for n in range(30):
                await asyncio.to_thread(dovecot.deliver, mail(n, "b"))
            await wait_until(in_folder(dovecot, PROCESSED, 150), 60, "all 150 processed")

    assert await folder_count(dovecot, "INBOX") == 0
    # Every mail is archived. Dovecot's MOVE is a copy and an expunge: a server killed
    # between the two leaves the mail in both folders, and moving the INBOX copy again
    # (after our ingest called it a duplicate) leaves a second archive copy of that one
    # mail. The tickets are what must be exact, and are.
    archived = await asyncio.to_thread(dovecot.message_ids, PROCESSED)
    wanted = {f"<{tag}-{n}@example.com>" for tag, total in (("a", 120), ("b", 30))
              for n in range(total)}
    assert set(archived) == wanted
    assert len(archived) - len(wanted) <= (0 if graceful else 1)
    assert await count(rt, InboundSpool.id) == 150
    assert await count(rt, Ticket.id) == 150
    events = [e["event"] for e in logs]
    assert "imap.connection_lost" in events or "imap.connect_failed" in events
    assert poller.stats.connects >= 2


@pytest.mark.dovecot
async def test_two_pollers_on_one_mailbox_ingest_each_message_once(
        tmp_path: Path, dovecot: DovecotServer, opened: Any, db_url: str) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, db_url))
    gateway = CountingGateway(rt)
    first = ImapPoller(gateway, rt.settings.imap[0], holder="first", tuning=FAST)
    second = ImapPoller(gateway, rt.settings.imap[0], holder="second", tuning=FAST)
    for n in range(60):
        dovecot.deliver(mail(n, "a"))
    async with Running(first, second) as running:
        await wait_until(in_folder(dovecot, PROCESSED, 60), 30, "the first 60 processed")
        holder, _ = await lease.current_holder(rt.sessions, mailbox_key(rt.settings.imap[0]))
        active, idle = (0, 1) if holder == "first" else (1, 0)
        assert running.pollers[idle].stats.ingested == 0, "both pollers worked at once"
        await running.stop(active)
        for n in range(20):
            dovecot.deliver(mail(n, "b"))
        await wait_until(in_folder(dovecot, PROCESSED, 80), 30, "the other poller taking over")

    assert await count(rt, InboundSpool.id) == 80
    assert set(gateway.calls.values()) == {1}, "a message was ingested twice"
    assert running.pollers[active].stats.ingested == 60
    assert running.pollers[idle].stats.ingested == 20


@pytest.mark.dovecot
async def test_message_sent_by_smtp_and_found_by_imap_is_one_entry(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot))
    gateway = make_gateway(rt)
    raw = mail(1, "both")
    server = await start_smtp(gateway, rt.settings.smtp, port=0)
    try:
        port = server.sockets[0].getsockname()[1]
        await aiosmtplib.send(raw, sender="customer1-both@example.com",
                              recipients=["support@support.example.com"],
                              hostname="127.0.0.1", port=port)
    finally:
        server.close()
        await server.wait_closed()
    dovecot.deliver(raw)
    poller = ImapPoller(gateway, rt.settings.imap[0], tuning=FAST)
    async with Running(poller):
        await wait_until(in_folder(dovecot, PROCESSED, 1), 20, "the IMAP copy processed")

    assert poller.stats.by_disposition == {"duplicate": 1}
    assert await count(rt, InboundSpool.id) == 1
    assert await count(rt, Ticket.id) == 1
    assert await count(rt, Message.id, Message.spool_id.is_not(None)) == 1


@pytest.mark.dovecot
async def test_a_reply_fetched_with_its_original_threads_onto_the_same_ticket(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot))
    original = mail(1, "thread", sender="alice@example.com")
    poller = ImapPoller(SlowGateway(rt, original), rt.settings.imap[0], tuning=FAST)
    reply = original.replace(b"Message-ID: <thread-1@example.com>",
                             b"Message-ID: <thread-2@example.com>\r\n"
                             b"In-Reply-To: <thread-1@example.com>"
                             ).replace(b"Please help", b"Any news on")
    for n in range(6):
        dovecot.deliver(mail(n, "noise"))
    dovecot.deliver(original)
    dovecot.deliver(reply)
    async with Running(poller):
        await wait_until(in_folder(dovecot, PROCESSED, 8), 20, "all 8 processed")
    assert poller.stats.by_disposition == {"ticket": 7, "reply": 1}
    assert await count(rt, Ticket.id) == 7


def test_message_ids_reads_own_id_and_the_ids_it_answers() -> None:
    raw = (b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <z@x>\r\n <a@x>\r\n"
           b"\r\nbody <not@header>\r\n")
    assert message_ids(raw) == ("<b@x>", ["<a@x>", "<z@x>", "<a@x>"])
    assert message_ids(b"Subject: none\n\nbody") == (None, [])


# -- behaviour -----------------------------------------------------------------------------

@pytest.mark.dovecot
async def test_idle_wakes_the_poller_long_before_the_poll_interval(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    await _idle_wakes_the_poller(tmp_path, dovecot, opened)


@pytest.mark.dovecot
def test_idle_wakes_the_poller_on_uvloop(tmp_path: Path, dovecot: DovecotServer) -> None:
    """The daemon runs its pollers on uvloop (helpdesk/eventloop.py): IDLE works there too."""
    import uvloop

    async def scenario() -> None:
        runtimes: list[Runtime] = []

        async def open_runtime(settings: Settings) -> Runtime:
            runtimes.append(await Runtime.open(settings))
            return runtimes[-1]

        try:
            await _idle_wakes_the_poller(tmp_path, dovecot, open_runtime)
        finally:
            for rt in runtimes:
                await rt.close()

    uvloop.run(scenario())


async def _idle_wakes_the_poller(tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, poll_interval=60.0))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=PollerTuning(
        backoff_initial=0.05, backoff_cap=0.4, lease_seconds=600, command_timeout=5))
    async with Running(poller):
        await wait_until(lambda: _connected(poller), 10, "the poller to connect")
        await asyncio.sleep(0.3)  # let it settle into IDLE
        sent = time.monotonic()
        dovecot.deliver(mail(1))
        await wait_until(in_folder(dovecot, PROCESSED, 1), 10, "the IDLE wake-up")
    assert time.monotonic() - sent < 10


async def _connected(poller: ImapPoller) -> bool:
    return poller.stats.connects > 0


@pytest.mark.dovecot
async def test_without_idle_the_poller_polls_every_interval(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, poll_interval=0.2))
    tuning = PollerTuning(backoff_initial=0.05, backoff_cap=0.4, lease_seconds=3,
                          command_timeout=5, ignore_capabilities=frozenset({"IDLE"}))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=tuning)
    async with Running(poller):
        await wait_until(lambda: _connected(poller), 10, "the poller to connect")
        dovecot.deliver(mail(1))
        await wait_until(in_folder(dovecot, PROCESSED, 1), 10, "the next poll")


@pytest.mark.dovecot
@pytest.mark.parametrize("missing", [{"MOVE"}, {"MOVE", "UIDPLUS"}],
                         ids=["copy-uid-expunge", "copy-expunge"])
async def test_without_move_messages_are_copied_deleted_and_expunged(
        tmp_path: Path, dovecot: DovecotServer, opened: Any, missing: set[str]) -> None:
    rt = await opened(settings_for(tmp_path, dovecot))
    tuning = PollerTuning(backoff_initial=0.05, backoff_cap=0.4, lease_seconds=3,
                          command_timeout=5, ignore_capabilities=frozenset(missing))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=tuning)
    for n in range(5):
        dovecot.deliver(mail(n))
    async with Running(poller):
        await wait_until(in_folder(dovecot, PROCESSED, 5), 20, "5 messages copied")
        await asyncio.sleep(0.3)
    assert await folder_count(dovecot, "INBOX") == 0
    assert await folder_count(dovecot, PROCESSED) == 5


@pytest.mark.dovecot
async def test_without_processed_folder_messages_are_flagged_seen_and_not_ingested_again(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, processed_folder="", poll_interval=0.1))
    gateway = CountingGateway(rt)
    poller = ImapPoller(gateway, rt.settings.imap[0], tuning=FAST)
    dovecot.deliver(mail(1))
    dovecot.deliver(mail(2))
    async with Running(poller):
        await wait_until(lambda: _ingested(poller, 2), 20, "2 messages ingested")
        await asyncio.sleep(0.6)  # several more rounds
    assert sum(gateway.calls.values()) == 2
    with dovecot.imap() as conn:
        conn.select("INBOX")
        typ, data = conn.uid("SEARCH", "SEEN")
    assert typ == "OK" and len(data[0].split()) == 2


async def _ingested(poller: ImapPoller, n: int) -> bool:
    return poller.stats.ingested >= n


@pytest.mark.dovecot
async def test_transient_failure_leaves_the_message_for_the_next_round(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, poll_interval=0.2))
    flaky, fine = mail(1, "flaky"), mail(2, "fine")
    gateway = CountingGateway(rt, fail_first=[flaky])
    poller = ImapPoller(gateway, rt.settings.imap[0], tuning=FAST)
    dovecot.deliver(flaky)
    dovecot.deliver(fine)
    async with Running(poller):
        await wait_until(in_folder(dovecot, PROCESSED, 2), 20, "both messages processed")
    assert gateway.calls[dedupe_key(flaky)[0]] == 2
    assert gateway.calls[dedupe_key(fine)[0]] == 1
    assert poller.stats.deferred == 1
    assert await count(rt, Ticket.id) == 2


@pytest.mark.dovecot
async def test_quarantined_message_goes_to_the_quarantine_folder(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, quarantine_folder="Quarantine"))
    bad = mail(1, "bad")
    poller = ImapPoller(QuarantiningGateway(rt, bad), rt.settings.imap[0], tuning=FAST)
    dovecot.deliver(bad)
    dovecot.deliver(mail(1))
    async with Running(poller):
        await wait_until(in_folder(dovecot, "Quarantine", 1), 20, "the quarantined message")
        await wait_until(in_folder(dovecot, PROCESSED, 1), 20, "the good message")
    assert poller.stats.by_disposition == {"quarantined": 1, "ticket": 1}
    assert await folder_count(dovecot, "INBOX") == 0


@pytest.mark.dovecot
async def test_changed_uidvalidity_rescans_the_folder(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot))
    key = mailbox_key(rt.settings.imap[0])
    async with rt.sessions() as session, session.begin():
        session.add(ImapState(mailbox=key, uidvalidity=1, last_uid=10**6, holder=""))
    for n in range(3):
        dovecot.deliver(mail(n))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=FAST)
    with structlog.testing.capture_logs() as logs:
        async with Running(poller):
            await wait_until(in_folder(dovecot, PROCESSED, 3), 20, "the rescan")
    assert any(e["event"] == "imap.uidvalidity_changed" and e["old"] == 1 for e in logs)
    state = await lease.read_state(rt.sessions, key)
    assert state.uidvalidity != 1 and state.last_uid == 3


@pytest.mark.dovecot
async def test_wrong_password_is_retried_with_backoff_not_in_a_tight_loop(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    rt = await opened(settings_for(tmp_path, dovecot, password="wrong"))
    tuning = PollerTuning(backoff_initial=0.05, backoff_cap=0.2, lease_seconds=3,
                          command_timeout=5)
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=tuning)
    with structlog.testing.capture_logs() as logs:
        async with Running(poller):
            await asyncio.sleep(1.5)
    failures = [e for e in logs if e["event"] == "imap.login_failed"]
    # waits of 0.05 + 0.1 + 0.2 + 0.2 ... allow at most ~10 attempts in 1.5 s, never dozens
    assert 2 <= len(failures) <= 10
    expected = [0.05, 0.1] + [0.2] * 10
    assert [f["retry_in"] for f in failures] == expected[:len(failures)]
    assert all("wrong" not in str(f) for f in failures), "the password reached the log"


@pytest.mark.dovecot
async def test_unreachable_server_is_retried_and_never_crashes(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    from tests.fixtures.dovecot import free_port

    rt = await opened(settings_for(tmp_path, dovecot, port=free_port()))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=FAST)
    with structlog.testing.capture_logs() as logs:
        async with Running(poller):
            await asyncio.sleep(0.5)
    assert sum(e["event"] == "imap.connect_failed" for e in logs) >= 2


@pytest.mark.dovecot
async def test_password_file_is_read_at_connect(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    secret = tmp_path / "imap.pw"
    secret.write_text(dovecot.password + "\n")
    rt = await opened(settings_for(tmp_path, dovecot, password="", password_file=str(secret)))
    poller = ImapPoller(make_gateway(rt), rt.settings.imap[0], tuning=FAST)
    dovecot.deliver(mail(1))
    async with Running(poller):
        await wait_until(in_folder(dovecot, PROCESSED, 1), 20, "login with the password file")


@pytest.mark.dovecot
async def test_mailgate_role_serves_every_configured_mailbox_and_stops_cleanly(
        tmp_path: Path, dovecot: DovecotServer, opened: Any) -> None:
    from mailgate.service import serve

    first, second = dovecot, dovecot.instance.add_user()
    settings = make_settings(tmp_path, sqlite_url(tmp_path),
                             imap=[imap_config(first), imap_config(second)])
    rt = await opened(settings)
    first.deliver(mail(1, "first"))
    second.deliver(mail(1, "second"))
    stop = asyncio.Event()
    role = asyncio.create_task(serve(rt, stop))
    await wait_until(in_folder(first, PROCESSED, 1), 20, "the first mailbox polled")
    await wait_until(in_folder(second, PROCESSED, 1), 20, "the second mailbox polled")
    stop.set()
    await asyncio.wait_for(role, timeout=10)
    assert await count(rt, Ticket.id) == 2
    for box in rt.settings.imap:
        assert await lease.current_holder(rt.sessions, mailbox_key(box)) == ("", None)


# -- the lease (both databases) and pure helpers -------------------------------------------

async def test_lease_goes_to_one_holder_and_is_taken_over_after_expiry(runtime: Runtime) -> None:
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    ttl = timedelta(seconds=30)
    box = "user@host:143/INBOX"
    results = await asyncio.gather(*(lease.acquire(runtime.sessions, box, f"h{i}", t0, ttl)
                                     for i in range(5)))
    assert sum(results) == 1
    winner = f"h{results.index(True)}"
    other = "h9"
    assert not await lease.acquire(runtime.sessions, box, other, t0 + ttl / 2, ttl)
    await lease.checkpoint(runtime.sessions, box, winner, lease.MailboxState(7, 42),
                           t0 + ttl / 2, ttl)
    assert not await lease.acquire(runtime.sessions, box, other, t0 + ttl, ttl)
    assert await lease.acquire(runtime.sessions, box, other, t0 + ttl * 2, ttl)
    with pytest.raises(lease.LeaseLost):
        await lease.checkpoint(runtime.sessions, box, winner, lease.MailboxState(7, 50),
                               t0 + ttl * 2, ttl)
    assert await lease.read_state(runtime.sessions, box) == lease.MailboxState(7, 42)
    await lease.release(runtime.sessions, box, other)
    assert await lease.acquire(runtime.sessions, box, winner, t0 + ttl * 2, ttl)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


# -- `helpdesk imap check` -----------------------------------------------------------------

@pytest.mark.dovecot
def test_imap_check_reports_folders_counts_and_capabilities(
        tmp_path: Path, dovecot: DovecotServer) -> None:
    from helpdesk.cli_imap import imap

    make_settings(tmp_path, sqlite_url(tmp_path), imap=[imap_config(dovecot)])
    dovecot.deliver(mail(1))
    dovecot.deliver(mail(2))
    result = CliRunner().invoke(imap, ["check", "--config", str(tmp_path / "helpdesk.toml")])
    assert result.exit_code == 0, result.output
    assert f"{dovecot.user}@" in result.output
    assert "INBOX: 2 messages" in result.output
    assert f"{PROCESSED}: missing (created on first poll)" in result.output
    assert "IDLE: yes" in result.output and "MOVE: yes" in result.output


@pytest.mark.dovecot
def test_imap_check_fails_with_exit_1_on_a_wrong_password(
        tmp_path: Path, dovecot: DovecotServer) -> None:
    from helpdesk.cli_imap import imap

    make_settings(tmp_path, sqlite_url(tmp_path), imap=[imap_config(dovecot, password="nope")])
    result = CliRunner().invoke(imap, ["check", "--config", str(tmp_path / "helpdesk.toml")])
    assert result.exit_code == 1
    assert "login refused" in result.output
    assert "nope" not in result.output
