"""A real Postfix in front of the help desk: relay to the SMTP receiver, LMTP, and the pipe.

The README's "Behind an MTA" set-up, on loopback: Postfix relays three domains to the
daemon, one per hand-over (``transport_maps``), and the help desk runs as the pipe user.
The database is locked for longer than Postfix's timeouts: every mail must be deferred,
none bounced; once the lock is gone Postfix's retries store each mail exactly once (one
ticket for a mail to two of our addresses) and its queue empties.
"""

from __future__ import annotations

import json
import re
import smtplib
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import require
from tests.fixtures import postfix
from tests.fixtures.postfix import Postfix, free_port, give_to, pipe_user_python, wait_for

pytestmark = pytest.mark.slow

DOMAINS = {"smtp": "smtp.support.example", "lmtp": "lmtp.support.example",
           "pipe": "pipe.support.example"}
POSTFIX_TIMEOUT_S = 3  # smtp_ and lmtp_data_done_timeout: Postfix gives up on our answer
BUSY_TIMEOUT_MS = 6000  # the help desk waits this long for the lock, then 451 / exit 75
LOCK_S = 12.0  # longer than both


def helpdesk_config(base: Path, smtp_port: int) -> Path:
    cfg = base / "helpdesk.toml"
    queues = "".join(f'[[queues]]\naddress = "billing@{d}"\ncategory = "billing"\n'
                     for d in DOMAINS.values())
    cfg.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{base / "hd.db"}"\n'
        f"busy_timeout_ms = {BUSY_TIMEOUT_MS}\n"
        f'[storage]\ndir = "{base / "data"}"\n'
        f'[logging]\nfile = "{base / "helpdesk.log"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        f"domains = {json.dumps(list(DOMAINS.values()))}\n"
        f'[lmtp]\nenabled = true\nsocket = "{base / "lmtp.sock"}"\nsocket_mode = 0o666\n'
        f'[outbound]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[portal]\nenabled = false\nport = {free_port()}\n' + queues)
    return cfg


class Desk:
    """The help desk as the pipe user runs it: `helpdesk mailgate` and CLI commands."""

    def __init__(self, base: Path, command: list[str], cfg: Path) -> None:
        self.base, self.command, self.cfg = base, command, cfg
        self.daemon: subprocess.Popen[bytes] | None = None

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.command, "--config", str(self.cfg), *args],
                              user=postfix.PIPE_USER, cwd="/", capture_output=True, timeout=120)

    def start(self, smtp_port: int) -> None:
        self.daemon = subprocess.Popen([*self.command, "--config", str(self.cfg), "mailgate"],
                                       user=postfix.PIPE_USER, cwd="/",
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: postfix._listens(smtp_port) and (self.base / "lmtp.sock").exists(),
                 60, "helpdesk mailgate never listened")

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon.wait(timeout=30)

    def spool(self) -> list[tuple[str, str]]:
        """(Message-ID, via) of every spool row."""
        with sqlite3.connect(self.base / "hd.db") as db:
            return list(db.execute("SELECT message_id, via FROM inbound_spool"))

    def tickets(self) -> int:
        with sqlite3.connect(self.base / "hd.db") as db:
            return int(db.execute("SELECT count(*) FROM tickets").fetchone()[0])


@pytest.fixture
def stack() -> Iterator[tuple[Postfix, Desk]]:
    require(postfix.available() is None, str(postfix.available()))
    base = Path(tempfile.mkdtemp(prefix="hd-postfix-", dir="/tmp"))
    base.chmod(0o755)
    desk = pf = None
    try:
        command = pipe_user_python(base)
        smtp_port = free_port()
        cfg = helpdesk_config(base, smtp_port)
        give_to(postfix.PIPE_USER, base, cfg)
        desk = Desk(base, command, cfg)
        init = desk.run("init")
        assert init.returncode == 0, init.stderr
        desk.start(smtp_port)
        pf = Postfix(base, helpdesk=command[0] if len(command) == 1 else " ".join(command),
                     config=cfg, relay_domains={
                         DOMAINS["smtp"]: f"smtp:[127.0.0.1]:{smtp_port}",
                         DOMAINS["lmtp"]: f"lmtp:unix:{base / 'lmtp.sock'}",
                         DOMAINS["pipe"]: "helpdesk:"},
                     main_cf={"smtp_data_done_timeout": f"{POSTFIX_TIMEOUT_S}s",
                              "lmtp_data_done_timeout": f"{POSTFIX_TIMEOUT_S}s"})
        pf.start()
        yield pf, desk
    finally:
        if pf is not None:
            pf.stop()
        if desk is not None:
            desk.stop()
        postfix.remove(base)


def mail(n: int, to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Customer {n} <customer{n}@example.org>"
    msg["To"] = ", ".join(to)
    msg["Subject"] = f"Problem number {n}"
    msg["Message-ID"] = f"<postfix-{n}@example.org>"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg.set_content(f"Please help with problem {n}.\n")
    return msg


def deferred_ids(log: str) -> set[str]:
    return set(re.findall(r" ([0-9A-F]{6,}): to=<[^>]+>.* status=deferred", log))


def test_postfix_defers_everything_while_the_database_is_locked_and_bounces_nothing(
        stack: tuple[Postfix, Desk]) -> None:
    pf, desk = stack
    mails = []
    for kind, domain in DOMAINS.items():
        mails.append((kind, mail(len(mails), [f"support@{domain}"])))
        mails.append((kind, mail(len(mails), [f"support@{domain}", f"billing@{domain}"])))

    locker = sqlite3.connect(desk.base / "hd.db", isolation_level=None, timeout=30)
    locker.execute("BEGIN EXCLUSIVE")
    locked_at = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as client:
            for _, msg in mails:
                client.send_message(msg)
        wait_for(lambda: len(deferred_ids(pf.log())) >= len(mails), 90,
                 "Postfix did not defer every mail while the database was locked")
        time.sleep(max(0.0, LOCK_S - (time.monotonic() - locked_at)))
        assert desk.tickets() == 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    pf.flush()
    wait_for(lambda: pf.queue() == "", 120, "Postfix's queue never emptied")
    log = pf.log()
    assert "status=bounced" not in log and "non-delivery notification" not in log, log
    for relay in (f"127.0.0.1[127.0.0.1]:{desk_port(pf)}", "lmtp.sock", "relay=helpdesk"):
        assert re.search(rf"{re.escape(relay)}.*status=deferred", log), (relay, log)
        assert re.search(rf"{re.escape(relay)}.*status=sent", log), (relay, log)
    assert "timed out while sending end of data" in log  # Postfix gave up before our answer
    assert "Command output: helpdesk: temporary failure, mail deferred: database is locked" \
        in log  # the pipe's one line, as Postfix logs it

    spool = desk.spool()
    ids = sorted(mid for mid, _ in spool)
    assert ids == sorted(msg["Message-ID"] for _, msg in mails)  # each stored exactly once
    # the pipe hands its mail to the daemon's LMTP listener once the lock is gone (while it
    # was held, the daemon answered 451 and the pipe, storing itself, deferred with 75)
    assert sorted(via for _, via in spool) == ["lmtp", "lmtp", "lmtp", "lmtp", "smtp", "smtp"]
    assert desk.tickets() == len(mails)  # a mail to two of our addresses: one ticket


def desk_port(pf: Postfix) -> int:
    """The SMTP receiver's port, as written in Postfix's transport map."""
    main_cf = (pf.etc / "main.cf").read_text()
    return int(re.search(r"smtp:\[127\.0\.0\.1\]:(\d+)", main_cf).group(1))  # type: ignore[union-attr]
