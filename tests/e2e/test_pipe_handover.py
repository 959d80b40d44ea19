"""The pipe hands mail to the running daemon over LMTP, and stores it itself when it cannot.

A pipe process per message that loads the whole pipeline is slow; one that only hands the
mail to the daemon (which commits concurrent mail together) is quick. Either way exit 0
means stored, exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import free_port


def mail(n: int, to: str = "support@support.example.com") -> bytes:
    return (f"From: Alice <alice@example.org>\r\nTo: {to}\r\nSubject: Printer {n}\r\n"
            f"Message-ID: <handover-{n}@example.org>\r\n\r\nIt burns.\r\n").encode()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[dict[str, object]]:
    socket_path = tmp_path / "run" / "lmtp.sock"
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "hd.db"}"\n'
                   f'[storage]\ndir = "{tmp_path / "data"}"\n'
                   f'[smtp]\nport = {free_port()}\n[portal]\nenabled = false\n'
                   f'[lmtp]\nenabled = true\nsocket = "{socket_path}"\n'
                   '[logging]\njson = true\n', encoding="utf-8")
    env = {**os.environ, "HELPDESK_CONFIG": str(cfg)}
    assert subprocess.run([sys.executable, "-m", "helpdesk", "init"], env=env,
                          capture_output=True, timeout=120).returncode == 0
    yield {"cfg": cfg, "env": env, "socket": socket_path, "dir": tmp_path}


def helpdesk(desk: dict[str, object], *args: str,
             stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "helpdesk", *args], input=stdin.decode(),
                          env=desk["env"], capture_output=True, text=True,  # type: ignore[arg-type]
                          timeout=120)


def start_mailgate(desk: dict[str, object]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "helpdesk", "mailgate"],
                            env=desk["env"], stdout=subprocess.DEVNULL,  # type: ignore[arg-type]
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not Path(str(desk["socket"])).exists():
        assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the LMTP socket never appeared"
        time.sleep(0.1)
    return proc


def spool(desk: dict[str, object]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(helpdesk(desk, "spool", "list", "--json").stdout)
    return rows


def test_the_pipe_hands_over_to_a_running_daemon(desk: dict[str, object]) -> None:
    daemon = start_mailgate(desk)
    try:
        one = helpdesk(desk, "ingest", stdin=mail(1))
        two = helpdesk(desk, "ingest", "--recipient", "support@support.example.com",
                       "--recipient", "billing@support.example.com",
                       stdin=mail(2, "support@support.example.com, billing@support.example.com"))
        again = helpdesk(desk, "ingest", stdin=mail(1))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    for done in (one, two, again):
        assert done.returncode == 0, done.stderr
        assert "handed over to the daemon" in done.stdout
    rows = spool(desk)  # the third delivery was the first again: one entry
    assert [(r["via"], r["status"]) for r in rows] == [("lmtp", "ticket"), ("lmtp", "ticket")]
    tickets = json.loads(helpdesk(desk, "tickets", "list", "--json").stdout)
    assert len(tickets) == 2


def test_without_a_daemon_the_pipe_stores_the_mail_itself(desk: dict[str, object]) -> None:
    done = helpdesk(desk, "ingest", stdin=mail(3))
    assert done.returncode == 0, done.stderr
    assert "handed over" not in done.stdout and "ticket TKT-000001" in done.stdout
    assert [r["via"] for r in spool(desk)] == ["pipe"]


def test_not_mail_is_refused_before_any_hand_over(desk: dict[str, object]) -> None:
    daemon = start_mailgate(desk)
    try:
        done = helpdesk(desk, "ingest", stdin=b"\x00\x01binary\x00")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert done.returncode == 65
    assert spool(desk) == []


def test_a_hand_over_loads_neither_the_whole_settings_nor_the_pipeline(
        desk: dict[str, object]) -> None:
    """An MTA starts one pipe per mail: the hand-over reads only the sections it needs,
    talks LMTP without smtplib (see mailgate/lmtpclient.py), and ends without tearing the
    interpreter down. ``-X importtime`` names every module the process imported."""
    daemon = start_mailgate(desk)
    try:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "helpdesk", "ingest",
             "--recipient", "support@support.example.com"], input=mail(7),
            env=desk["env"], capture_output=True, timeout=120)  # type: ignore[arg-type]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert b"handed over to the daemon" in done.stdout
    imported = {line.rpartition(b"|")[2].strip().decode()
                for line in done.stderr.splitlines() if line.startswith(b"import time:")}
    assert "mailgate.lmtpclient" in imported  # the listing is whole
    heavy = {"helpdesk.config", "smtplib", "email.parser", "sqlalchemy", "structlog",
             "mailgate.ingest"} & imported
    assert not heavy, heavy
