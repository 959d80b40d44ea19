"""`helpdesk ingest` as an MTA's pipe runs it: the exit status is the whole answer, and it holds."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

MAIL = (b"From: Alice Example <alice@example.org>\r\nTo: someone-else@example.net\r\n"
        b"Subject: Printer is on fire\r\nMessage-ID: <pipe-1@example.org>\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello, my printer is on fire.\r\n")
HELPDESK = [sys.executable, "-m", "helpdesk"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, *, url: str = "", extra: str = "") -> Path:
    cfg = tmp_path / "helpdesk.toml"
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'hd.db'}"
    cfg.write_text(
        f'[database]\nurl = "{url}"\n'
        f'busy_timeout_ms = 300\n[storage]\ndir = "{tmp_path / "data"}"\n'
        f'[logging]\nfile = "{tmp_path / "helpdesk.log"}"\n'
        f'[smtp]\nport = {free_port()}\ndomains = ["support.example.com"]\n'
        f'[portal]\nport = {free_port()}\n'
        '[[queues]]\naddress = "billing@support.example.com"\ncategory = "billing"\n'
        '[[queues]]\naddress = "sales@support.example.com"\ncategory = "question"\n' + extra)
    return cfg


def pipe(cfg: Path, *args: str, stdin: bytes = MAIL, cwd: Path | None = None,
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*HELPDESK, "ingest", "--config", str(cfg), *args], input=stdin,
                          capture_output=True, timeout=120, cwd=cwd or cfg.parent)


def show(cfg: Path, ref: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run([*HELPDESK, "--config", str(cfg), "tickets", "show", ref, "--json"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def ticket_count(cfg: Path) -> int:
    proc = subprocess.run([*HELPDESK, "--config", str(cfg), "tickets", "list", "--json"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return len(json.loads(proc.stdout))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    assert subprocess.run([*HELPDESK, "--config", str(path), "init"],
                          capture_output=True, timeout=120).returncode == 0
    return path


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text


def run_with_stderr_closed_after(cmd: list[str], limit: int) -> int:
    """Run ``cmd`` as Postfix's pipe does: read ``limit`` bytes of its stderr, then close it.

    The pipe holds only ``limit`` bytes (F_SETPIPE_SZ), so anything written after them
    meets a closed pipe whatever the timing.
    """
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, limit)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=write_end)
    os.close(write_end)
    assert proc.stdin is not None
    proc.stdin.write(MAIL)
    proc.stdin.close()
    got = b""
    while len(got) < limit:
        chunk = os.read(read_end, limit - len(got))
        if not chunk:
            break
        got += chunk
    os.close(read_end)
    return proc.wait(timeout=120)


def test_pipe_exits_75_when_the_database_is_locked_and_stderr_closes_after_4kb(
        cfg: Path) -> None:
    locker = sqlite3.connect(cfg.parent / "hd.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        status = run_with_stderr_closed_after([*HELPDESK, "ingest", "--config", str(cfg)],
                                              4096)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert status == 75
    assert ticket_count(cfg) == 0
    assert pipe(cfg).returncode == 0  # the MTA's retry is stored
    assert ticket_count(cfg) == 1


def test_pipe_exits_75_when_stdout_and_stderr_are_closed_from_the_start(cfg: Path) -> None:
    locker = sqlite3.connect(cfg.parent / "hd.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        proc = subprocess.run(
            ["sh", "-c", f"exec {' '.join(HELPDESK)} ingest --config {cfg} >&- 2>&-"],
            input=MAIL, timeout=120)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert proc.returncode == 75


def test_pipe_names_a_locked_database_in_one_line(cfg: Path) -> None:
    locker = sqlite3.connect(cfg.parent / "hd.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        proc = pipe(cfg)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert proc.returncode == 75
    assert "database is locked" in one_line(proc.stderr)
    assert "ingest.deferred" in (cfg.parent / "helpdesk.log").read_text()  # detail: the log


def test_pipe_names_a_corrupt_database(tmp_path: Path) -> None:
    (tmp_path / "hd.db").write_bytes(b"this is not a database, " * 200)
    proc = pipe(write_config(tmp_path))
    assert proc.returncode == 75
    assert "corrupt" in one_line(proc.stderr)


def test_pipe_defers_on_a_relative_database_path_in_the_mta_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = write_config(tmp_path, url="sqlite+aiosqlite:///helpdesk.db")
    proc = pipe(cfg, cwd=spool)
    assert proc.returncode == 75
    assert "database missing" in one_line(proc.stderr) and "absolute" in proc.stderr.decode()
    assert not (spool / "helpdesk.db").exists()


@pytest.mark.parametrize("problem", ["missing", "unreadable", "invalid"])
def test_pipe_defers_on_a_configuration_error(tmp_path: Path, problem: str) -> None:
    cfg = tmp_path / "helpdesk.toml"
    if problem == "unreadable":
        cfg.mkdir()  # reading fails with an OSError even for root
    elif problem == "invalid":
        cfg.write_text("[smtp]\nno_such_key = 1\n")
    proc = pipe(cfg)
    assert proc.returncode == 75
    assert "configuration error" in one_line(proc.stderr)


def test_pipe_defers_on_a_usage_error(cfg: Path) -> None:
    proc = pipe(cfg, "--no-such-option")
    assert proc.returncode == 75
    assert "usage error" in one_line(proc.stderr)
    proc = pipe(cfg, "not-a-file-and-no-recipient")
    assert proc.returncode == 75
    assert "no such file" in one_line(proc.stderr)


def test_pipe_still_bounces_what_is_clearly_not_mail_with_65(cfg: Path) -> None:
    proc = pipe(cfg, stdin=b"\x00\x01\x02binary\x00junk")
    assert proc.returncode == 65
    assert "not an email" in one_line(proc.stderr)


def test_envelope_recipient_chooses_the_queue_the_headers_do_not_name(cfg: Path) -> None:
    proc = pipe(cfg, "--sender", "alice@example.org",
                "--recipient", "billing@support.example.com")
    assert proc.returncode == 0, proc.stderr
    assert show(cfg, "1")["category"] == "billing"


def test_postfix_expanded_recipients_make_one_ticket_in_the_first_configured_queue(
        cfg: Path) -> None:
    # Postfix turns `--recipient ${recipient}` into `--recipient a b` for two recipients;
    # the queue is the first configured one that matches, as for SMTP's RCPT TO.
    proc = pipe(cfg, "--sender", "alice@example.org", "--recipient",
                "sales@support.example.com", "billing@support.example.com",
                "someone@elsewhere.example")
    assert proc.returncode == 0, proc.stderr
    assert ticket_count(cfg) == 1
    assert show(cfg, "1")["category"] == "billing"


def test_envelope_sender_stands_in_for_a_missing_from(cfg: Path) -> None:
    no_from = b"To: someone-else@example.net\r\nSubject: no From\r\n\r\nbody\r\n"
    proc = pipe(cfg, "--sender", "bob@example.org", "--recipient",
                "support@support.example.com", stdin=no_from)
    assert proc.returncode == 0, proc.stderr
    assert show(cfg, "1")["requester"]["email"] == "bob@example.org"
