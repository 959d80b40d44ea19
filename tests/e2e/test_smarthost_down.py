"""`helpdesk run` with a smarthost that does not answer: one clear warning, mail waits visibly."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mail(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"customer{n}@example.org"
    msg["To"] = "support@support.example.com"
    msg["Subject"] = f"Question {n}"
    msg["Message-ID"] = f"<down-{n}@example.org>"
    msg.set_content("Hello.\n")
    return msg


def test_an_unreachable_smarthost_is_reported_once_and_outbox_list_shows_why(
        tmp_path: Path) -> None:
    smtp_port, dead_port = _free_port(), _free_port()  # nothing listens on dead_port
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "hd.db"}"\n'
                   f'[storage]\ndir = "{tmp_path / "data"}"\n'
                   f'[smtp]\nport = {smtp_port}\n[portal]\nenabled = false\n'
                   f'[outbound]\nport = {dead_port}\nretry_base_seconds = 0.2\n'
                   f'relay_interval_seconds = 0.1\nmax_attempts = 1000\n'
                   '[logging]\nlevel = "INFO"\njson = true\n')
    helpdesk = [sys.executable, "-m", "helpdesk", "--config", str(cfg)]
    proc = subprocess.Popen([*helpdesk, "run"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                    for n in range(3):
                        smtp.send_message(_mail(n))
                break
            except OSError:
                assert proc.poll() is None
                assert time.monotonic() < deadline, "SMTP never listened"
                time.sleep(0.2)

        def outbox() -> list[dict[str, object]]:
            out = subprocess.run([*helpdesk, "outbox", "list", "--json"], cwd=tmp_path,
                                 capture_output=True, timeout=60, check=True).stdout
            return list(json.loads(out))

        deadline = time.monotonic() + 30
        while not (rows := outbox()) or min(int(str(r["attempts"])) for r in rows) < 2:
            assert time.monotonic() < deadline, rows
            time.sleep(0.3)
        listing = subprocess.run([*helpdesk, "outbox", "list"], cwd=tmp_path,
                                 capture_output=True, timeout=60, check=True).stdout.decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log = proc.stdout.read().decode()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
    waiting = ("pending", "queued", "sending")  # a row between two attempts may be claimed
    assert all(r["status"] in waiting for r in rows), rows
    assert all(f"127.0.0.1:{dead_port}" in str(r["error"]) for r in rows), rows
    assert len(listing.strip().splitlines()) == len(rows) >= 3
    assert all(f"127.0.0.1:{dead_port}" in line and line.split()[1] in waiting
               for line in listing.strip().splitlines()), listing
    warnings = [e["event"] for e in _events(log) if e.get("level") == "warning"]
    assert warnings.count("outbound.smarthost_unreachable") == 1, log
    assert [w for w in warnings if w.startswith("outbox.")] == [], log


def _events(log: str) -> list[dict[str, object]]:
    """The structured log lines (uvicorn may add plain ones)."""
    out = []
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            out.append(event)
    return out
