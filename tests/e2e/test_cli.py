"""The `helpdesk` command as an operator or an MTA pipe runs it: real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAIL = (b"From: Alice Example <alice@example.org>\r\nTo: support@support.example.com\r\n"
        b"Subject: Printer is on fire\r\nMessage-ID: <cli-1@example.org>\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello, my printer is on fire.\r\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hd(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "hd.db"}"\n'
                   f'busy_timeout_ms = 300\n[storage]\ndir = "{tmp_path / "data"}"\n'
                   f'[smtp]\nport = {free_port()}\n[portal]\nport = {free_port()}\n')

    def run(*args: str, stdin: bytes = b"",
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "helpdesk", "--config", str(cfg), *args],
                              input=stdin, capture_output=True, timeout=timeout, cwd=tmp_path)
    run.cfg = cfg  # type: ignore[attr-defined]
    run.db = tmp_path / "hd.db"  # type: ignore[attr-defined]
    return run


def test_help_lists_every_subcommand_with_one_line(hd) -> None:  # type: ignore[no-untyped-def]
    out = hd("--help").stdout.decode()
    for name in ("init", "run", "mailgate", "worker", "portal", "ingest", "tickets", "agents",
                 "outbox", "spool"):
        assert f"  {name} " in out or f"  {name}\n" in out, name


def test_ingest_then_show_gives_requester_and_text(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    ingested = hd("ingest", stdin=MAIL)
    assert ingested.returncode == 0, ingested.stderr
    shown = hd("tickets", "show", "TKT-000001", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["number"] == "TKT-000001"
    assert view["subject"] == "Printer is on fire"
    assert view["requester"] == {"email": "alice@example.org", "name": "Alice Example"}
    assert view["channel"] == "email" and view["status"] == "Open"
    assert "printer is on fire" in view["messages"][0]["text"]
    assert view["messages"][0]["kind"] == "public"
    listed = json.loads(hd("tickets", "list", "--json").stdout)
    assert [t["number"] for t in listed] == ["TKT-000001"]


@pytest.mark.parametrize("where", ["command", "group"])
def test_config_option_is_accepted_after_the_subcommand_too(hd, where: str) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    args = (["tickets", "list", "--config", str(hd.cfg)] if where == "command"
            else ["tickets", "--config", str(hd.cfg), "list"])
    proc = subprocess.run([sys.executable, "-m", "helpdesk", *args], capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_init_is_idempotent(hd) -> None:  # type: ignore[no-untyped-def]
    first, second = hd("init"), hd("init")
    assert first.returncode == second.returncode == 0
    assert b"migrated" in first.stdout and b"already up to date" in second.stdout


@pytest.mark.parametrize("data", [b"", b"   \n", b"\x00\x01\x02binary\x00junk"])
def test_ingest_refuses_what_is_clearly_not_mail_with_65(hd, data: bytes) -> None:  # type: ignore[no-untyped-def]
    proc = hd("ingest", stdin=data)
    assert proc.returncode == 65
    assert b"not an email" in proc.stderr and b"Traceback" not in proc.stderr


def test_ingest_keeps_text_without_headers(hd) -> None:  # type: ignore[no-untyped-def]
    proc = hd("ingest", stdin=b"just some words someone piped in\n")
    assert proc.returncode == 0, proc.stderr


def test_ingest_exits_75_when_the_database_is_locked(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    locker = sqlite3.connect(hd.db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        proc = hd("ingest", stdin=MAIL)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert proc.returncode == 75, proc.stderr
    assert hd("ingest", stdin=MAIL).returncode == 0  # the MTA's retry is stored


def test_ingest_accepts_an_mbox_from_line(hd) -> None:  # type: ignore[no-untyped-def]
    proc = hd("ingest", stdin=b"From alice@example.org Mon Nov 23 10:00:00 2026\n"
              + MAIL.replace(b"\r\n", b"\n"))
    assert proc.returncode == 0, proc.stderr
    view = json.loads(hd("tickets", "show", "1", "--json").stdout)
    assert view["requester"]["email"] == "alice@example.org"


def test_run_serves_smtp_and_stops_cleanly_on_sigterm(hd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = int(hd.cfg.read_text().split("[smtp]\nport = ")[1].split("\n")[0])
    proc = subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(hd.cfg), "run"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    assert s.recv(100).startswith(b"220")
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "SMTP never listened"
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert os.path.exists(hd.db)
