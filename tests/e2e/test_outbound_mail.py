"""Outbound mail from real worker processes: crash safety under SIGKILL, and the CLI end to end.

The worker runs as a subprocess against a real SMTP sink, on SQLite and PostgreSQL, with the
in-memory and the Redis broker. A worker killed with SIGKILL in the middle of 500 mails is
restarted; afterwards every mail has reached the sink, and a Message-ID arrives twice only
for rows that were inside the documented at-least-once window (state ``sending`` at the
kill: accepted by the smarthost, not yet marked sent).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from helpdesk import outbox
from helpdesk.audit import Actor
from helpdesk.config import Settings
from helpdesk.directory import get_or_create_contact
from helpdesk.models import OutboxRow
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from tests.conftest import make_settings

if TYPE_CHECKING:
    from tests.fixtures.smtp_sink import SmtpSink

pytest_plugins = ["tests.fixtures.smtp_sink"]

REPO = Path(__file__).resolve().parents[2]
MAILS = 500
THREADS = 8
LEASE_SECONDS = 10.0  # longer than any send here, even on a loaded machine
RUNNER = textwrap.dedent("""
    import asyncio, signal, sys
    from datetime import timedelta

    from helpdesk.config import load_settings
    from helpdesk.logs import configure_logging
    from helpdesk.runtime import Runtime
    from responders.broker import WorkerOptions
    from responders.service import run


    async def main(path: str) -> None:
        settings = load_settings(path, environ={})
        configure_logging(settings.logging)
        rt = await Runtime.open(settings, migrate=False)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        options = WorkerOptions(lease=timedelta(seconds=%(lease)s), poll_interval=0.05,
                                retry_base=timedelta(seconds=0.2), threads=%(threads)d,
                                max_in_flight=32)
        try:
            await run(rt, stop, options)
        finally:
            await rt.close()


    asyncio.run(main(sys.argv[1]))
""") % {"lease": LEASE_SECONDS, "threads": THREADS}


@pytest.fixture
def settings(tmp_path: Path, db_url: str, broker_url: str, smtp_sink: SmtpSink) -> Settings:
    return make_settings(
        tmp_path, db_url, broker={"url": broker_url},
        outbound={"host": "127.0.0.1", "port": smtp_sink.port},
        portal={"secret_key": ["e2e-secret"], "base_url": "http://portal.test"})


def start_worker(tmp_path: Path, settings: Settings) -> subprocess.Popen[bytes]:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, str(runner), settings.source], cwd=tmp_path,
                            env=env, stdout=log, stderr=subprocess.STDOUT)


async def seed(settings: Settings, count: int) -> set[str]:
    """One ticket and ``count`` acknowledgement rows for it; returns their Message-IDs."""
    rt = await Runtime.open(settings)
    try:
        async with rt.sessions() as session, session.begin():
            alice = await get_or_create_contact(session, "alice@example.org", "Alice")
            ticket, message = await TicketService(session, settings, clock=rt.clock).open_ticket(
                requester=alice, subject="Printer on fire", text="It burns.",
                actor=Actor("contact", alice.email), message_id="<alice-1@example.org>")
            ids = set()
            for _ in range(count):
                row = await outbox.enqueue(
                    session, kind="ack", template="acknowledgement", to=[alice.email],
                    instance_id=settings.instance.id, secret=rt.secrets[-1],
                    domain=rt.mail_domain, at=rt.clock(), ticket=ticket,
                    about_message_id=message.id, in_reply_to=message.message_id)
                ids.add(row.message_id)
        return ids
    finally:
        await rt.close()


async def states(settings: Settings) -> dict[str, str]:
    """Message-ID -> row status, read by a fresh connection."""
    rt = await Runtime.open(settings, migrate=False)
    try:
        async with rt.sessions() as session:
            result = await session.execute(select(OutboxRow.message_id, OutboxRow.status))
            return {message_id: status for message_id, status in result}
    finally:
        await rt.close()


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"not within {timeout}s: {what}")


@pytest.mark.slow
def test_worker_killed_mid_batch_sends_everything_after_restart_duplicates_only_in_window(
        tmp_path: Path, settings: Settings, smtp_sink: SmtpSink) -> None:
    wanted = asyncio.run(seed(settings, MAILS))
    first = start_worker(tmp_path, settings)
    try:
        smtp_sink.wait_for(count=MAILS // 5, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    received_at_kill = len(smtp_sink.messages)
    at_kill = asyncio.run(states(settings))
    window = {mid for mid, status in at_kill.items() if status == "sending"}
    assert received_at_kill < MAILS, "the worker finished before it was killed"
    assert len(window) <= THREADS

    second = start_worker(tmp_path, settings)
    try:
        wait_until(lambda: set(smtp_sink.by_message_id()) >= wanted, 120,
                   "every Message-ID at the sink after the restart")
        wait_until(lambda: set(asyncio.run(states(settings)).values()) == {"sent"}, 30,
                   "every row marked sent")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()[-3000:]

    by_id = smtp_sink.by_message_id()
    assert set(by_id) == wanted
    duplicated = {mid for mid, copies in by_id.items() if len(copies) > 1}
    assert duplicated <= window, f"sent twice outside the window: {duplicated - window}"
    assert all(len(copies) <= 2 for copies in by_id.values())


def test_cli_ingest_then_worker_sends_the_acknowledgement_and_ignores_an_auto_reply(
        tmp_path: Path, settings: Settings, smtp_sink: SmtpSink) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def helpdesk(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "helpdesk", "--config", settings.source,
                               *args], input=stdin, capture_output=True, timeout=120,
                              cwd=tmp_path, env=env)

    mail = (b"From: Alice <alice@example.org>\r\nTo: support@support.example.com\r\n"
            b"Subject: Printer on fire\r\nMessage-ID: <e2e-1@example.org>\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nIt burns.\r\n")
    auto = (b"From: Alice <alice@example.org>\r\nTo: support@support.example.com\r\n"
            b"Subject: Out of office\r\nMessage-ID: <e2e-2@example.org>\r\n"
            b"Auto-Submitted: auto-replied\r\n"
            b"Date: Mon, 23 Nov 2026 10:01:00 +0000\r\n\r\nI am away.\r\n")
    assert helpdesk("init").returncode == 0
    for raw in (mail, auto):
        done = helpdesk("ingest", stdin=raw)
        assert done.returncode == 0, done.stderr.decode()
    worker = subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", settings.source,
                               "worker"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        [ack] = smtp_sink.wait_for(lambda m: "alice@example.org" in m.rcpt_tos, timeout=30)
        time.sleep(1.0)  # anything else queued would arrive by now
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()[-3000:]
    assert ack.subject == "[TKT-000001] Printer on fire"
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["In-Reply-To"] == "<e2e-1@example.org>"
    assert b"http://portal.test/t/" in ack.raw.replace(b"=\r\n", b"")
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("alice@example.org",)]
    listed = helpdesk("outbox", "list", "--json")
    assert listed.returncode == 0 and b'"sent"' in listed.stdout


def test_two_instances_whose_mail_reaches_each_other_stop_after_the_first_auto_reply(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    configs = {}
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        configs[name] = make_settings(
            folder, f"sqlite+aiosqlite:///{folder / 'hd.db'}",
            instance={"id": f"helpdesk-{name}", "admin_email": f"admin@{name}.example"},
            smtp={"domains": [f"{name}.example"]},
            outbound={"host": "127.0.0.1", "port": smtp_sink.port,
                      "from": f"support@{name}.example", "ack_limit_per_hour": 3},
            portal={"secret_key": [f"secret-{name}"]}).source

    def helpdesk(name: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "helpdesk", "--config", configs[name],
                               *args], input=stdin, capture_output=True, timeout=120,
                              cwd=tmp_path, env=env)

    for name in configs:
        assert helpdesk(name, "init").returncode == 0
    # A person at B writes to A by hand: the one mail that may be answered automatically.
    first = (b"From: Support B <support@b.example>\r\nTo: support@a.example\r\n"
             b"Subject: Hello from B\r\nMessage-ID: <human-1@b.example>\r\n"
             b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHi A.\r\n")
    assert helpdesk("a", "ingest", stdin=first).returncode == 0
    workers = [subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", configs[name],
                                 "worker"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for name in configs]
    try:
        delivered = 0
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:  # the smarthosts deliver to each other
            for message in smtp_sink.messages[delivered:]:
                for rcpt in message.rcpt_tos:
                    target = rcpt.rpartition("@")[2].split(".")[0]
                    if target in configs:
                        assert helpdesk(target, "ingest", stdin=message.raw).returncode == 0
                delivered += 1
            time.sleep(0.2)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=60)
    between = [m for m in smtp_sink.messages
               if any(r.endswith(("@a.example", "@b.example")) for r in m.rcpt_tos)
               and not any(r.startswith("admin@") for r in m.rcpt_tos)]
    assert 1 <= len(between) <= 3, [(m.rcpt_tos, m.subject) for m in between]
    assert between[0].message["Auto-Submitted"] == "auto-replied"
    assert all(m.message["X-Helpdesk-Loop"] in ("helpdesk-a", "helpdesk-b") for m in between)
