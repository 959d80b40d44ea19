"""Kill `helpdesk mailgate` with SIGKILL mid-stream: after restart every mail is in one entry.

Four concurrent SMTP clients send 1,000 distinct messages and, like real MTAs, retry on
any error or dropped connection until they get 250. The gateway is killed hard in the
middle and started again. Mail whose 250 was lost in the crash is retried and must be
recognised as already stored, never applied twice.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, select

from helpdesk.config import load_settings
from helpdesk.models import Message
from helpdesk.runtime import Runtime

RCPT = "support@support.example.com"
TOTAL = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mail(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"sender{i % 40}@example{i % 7}.org"
    msg["To"] = RCPT
    msg["Subject"] = f"crash test {i}"
    msg["Message-ID"] = f"<crash.{i}@example.org>"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg.set_content(f"message number {i}\n")
    return msg.as_bytes()


def _start(cfg: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(cfg), "mailgate"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
async def test_sigkill_in_the_middle_of_1000_mails_loses_and_duplicates_nothing(
        tmp_path: Path) -> None:
    port = _free_port()
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "hd.db"}"\n'
                   f'[storage]\ndir = "{tmp_path / "data"}"\n[smtp]\nport = {port}\n'
                   '[logging]\nlevel = "WARNING"\n')
    proc = _start(cfg, tmp_path)
    accepted: set[int] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TOTAL):
        queue.put_nowait(i)

    async def client() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            deadline = time.monotonic() + 180
            while True:
                assert time.monotonic() < deadline, f"mail {i} never accepted"
                try:
                    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port,
                                               timeout=20) as smtp:
                        await smtp.sendmail(f"sender{i}@example.org", [RCPT], _mail(i))
                    accepted.add(i)
                    break
                except (aiosmtplib.SMTPException, OSError):
                    await asyncio.sleep(0.1)

    async def killer() -> None:
        nonlocal proc
        while len(accepted) < TOTAL // 3:
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await asyncio.sleep(0.5)  # clients see refused connections and keep retrying
        proc = _start(cfg, tmp_path)

    try:
        await asyncio.gather(*(client() for _ in range(4)), killer())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert accepted == set(range(TOTAL))
    rt = await Runtime.open(load_settings(cfg, environ={}), migrate=False)
    try:
        async with rt.sessions() as session:
            rows = (await session.execute(
                select(Message.message_id, func.count()).group_by(Message.message_id))).all()
    finally:
        await rt.close()
    counts = {mid: n for mid, n in rows}
    assert len(counts) == TOTAL
    assert set(counts.values()) == {1}
    assert set(counts) == {f"<crash.{i}@example.org>" for i in range(TOTAL)}
