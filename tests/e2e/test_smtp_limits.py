"""The SMTP port under attack: connection limits, the DATA timeout, and bounded memory.

Real clients on real sockets against the real receiver: in-process for the limits and
the timeout, and `helpdesk mailgate` as a process where its memory is measured.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from helpdesk.notify import Notifier
from helpdesk.runtime import Runtime
from mailgate.ingest import Gateway, IngestResult
from mailgate.replies import R421_TOO_MANY_CONNECTIONS, R421_TOO_MANY_FROM_CLIENT
from mailgate.smtp import start_smtp
from tests.conftest import make_settings, sqlite_url
from tests.e2e.test_smtp_data import Wire, headers, stored
from tests.e2e.test_smtp_gateway import SUPPORT, Gate, _start


async def _gate(tmp_path: Path, **smtp: object) -> AsyncIterator[Gate]:
    async for g in _start(tmp_path, sqlite_url(tmp_path), smtp=smtp):
        yield g


async def _greeting(port: int, source: str = "127.0.0.1") -> tuple[str, Wire]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                  local_addr=(source, 0))
    wire = Wire(reader, writer)
    return await wire.reply(), wire


async def _closed_by_server(wire: Wire) -> bool:
    return await asyncio.wait_for(wire.reader.read(), 10) == b""


def _send_one(gate_port: int, raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", gate_port, timeout=30) as smtp:
        return smtp.sendmail("alice@example.org", [SUPPORT], raw)


def _refused(port: int) -> tuple[int, bytes]:
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtplib.SMTP("127.0.0.1", port, timeout=10)
    return info.value.smtp_code, info.value.smtp_error


# -- connection limits ---------------------------------------------------------------------


async def test_a_connection_over_the_total_limit_gets_421_and_is_closed(tmp_path: Path) -> None:
    async for gate in _gate(tmp_path, max_connections=3, max_connections_per_client=0):
        open_ = [await _greeting(gate.port, f"127.0.0.{i + 1}") for i in range(3)]
        assert all(reply.startswith("220") for reply, _ in open_)
        reply, extra = await _greeting(gate.port, "127.0.0.9")
        assert reply == R421_TOO_MANY_CONNECTIONS
        assert await _closed_by_server(extra)
        await open_[0][1].close()
        await asyncio.sleep(0.2)  # the server notices the closed connection
        reply, again = await _greeting(gate.port, "127.0.0.9")
        assert reply.startswith("220")  # the freed slot is given again
        for _, wire in [*open_[1:], (reply, again)]:
            await wire.close()


async def test_a_client_over_its_own_limit_gets_421_while_others_are_served(
        tmp_path: Path) -> None:
    async for gate in _gate(tmp_path, max_connections=10, max_connections_per_client=2):
        mine = [await _greeting(gate.port) for _ in range(2)]
        assert all(reply.startswith("220") for reply, _ in mine)
        reply, third = await _greeting(gate.port)
        assert reply == R421_TOO_MANY_FROM_CLIENT and reply.startswith("421 4.7.0 ")
        assert await _closed_by_server(third)
        reply, other = await _greeting(gate.port, "127.0.0.2")  # another client address
        assert reply.startswith("220")
        assert (await other.cmd("EHLO other.example.org")).startswith("250")
        assert (await other.cmd("QUIT")).startswith("221")
        for _, wire in [*mine, (reply, other)]:
            await wire.close()


async def test_smtplib_sees_the_421_greeting_as_a_refused_connection(tmp_path: Path) -> None:
    async for gate in _gate(tmp_path, max_connections=1):
        reply, held = await _greeting(gate.port)
        assert reply.startswith("220")
        code, text = await asyncio.to_thread(_refused, gate.port)
        assert (code, text.decode()) == (421, R421_TOO_MANY_CONNECTIONS[4:])
        await held.close()


# -- the DATA timeout ----------------------------------------------------------------------


async def test_a_stalled_data_is_cut_after_the_data_timeout_and_nothing_is_kept(
        tmp_path: Path) -> None:
    async for gate in _gate(tmp_path, data_timeout_seconds=0.5, data_in_memory_bytes=1024):
        wire = await Wire.open(gate.port)
        assert (await wire.cmd("EHLO client.example.org")).startswith("250")
        await wire.envelope()
        wire.writer.write(headers("Stalled", "stalled") + b"part of a body\r\n" * 200)
        await wire.writer.drain()
        started = time.monotonic()
        reply = await asyncio.wait_for(wire.reader.read(), 10)  # the server's last words
        assert reply.startswith(b"421 4.4.2 ") and time.monotonic() - started < 5
        await wire.close()
        assert await gate.spool() == []
        assert [p for p in gate.rt.store.root.rglob("*") if p.is_file()] == []


async def test_a_slow_but_steady_sender_outlasts_the_data_timeout(tmp_path: Path) -> None:
    async for gate in _gate(tmp_path, data_timeout_seconds=0.5):
        wire = await Wire.open(gate.port)
        assert (await wire.cmd("EHLO client.example.org")).startswith("250")
        await wire.envelope()
        raw = headers("Slow", "slow") + b"".join(b"line %d\r\n" % i for i in range(8))
        for line in raw.splitlines(keepends=True):  # 1.6 s in all, 0.2 s apart
            wire.writer.write(line)
            await wire.writer.drain()
            await asyncio.sleep(0.2)
        assert (await wire.data(b".\r\n")).startswith("250 2.0.0 Queued as TKT-")
        await asyncio.sleep(1)  # after DATA, the command timeout applies again (300 s)
        assert (await wire.cmd("QUIT")).startswith("221")
        await wire.close()
        assert await stored(gate) == [raw]


# -- large messages take turns to be in memory --------------------------------------------


class _Counting(Gateway):
    """The real gateway, noting how many bytes of raw mail it holds at once."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt, listeners=[Notifier(rt)])
        self.held: list[int] = []
        self.seen: set[tuple[int, ...]] = set()  # the sizes held together, at each arrival

    async def ingest(self, raw: bytes, via: str, **kwargs: Any) -> IngestResult:
        self.held.append(len(raw))
        self.seen.add(tuple(sorted(self.held)))
        try:
            await asyncio.sleep(0.05)  # long enough for the others to arrive
            return await super().ingest(raw, via, **kwargs)
        finally:
            self.held.remove(len(raw))


async def test_spooled_messages_are_ingested_within_the_memory_budget(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sqlite_url(tmp_path), smtp={
        "data_in_memory_bytes": 16384, "max_ingest_bytes": 250_000})
    rt = await Runtime.open(settings)
    gateway = _Counting(rt)
    server = await start_smtp(gateway, settings.smtp, port=0)
    port = server.sockets[0].getsockname()[1]
    line = b"B" * 98 + b"\r\n"
    mails = [headers(f"Big {i}", f"big{i}") + line * 1000 for i in range(6)]
    mails.append(headers("Bigger than the budget", "bigger") + line * 3000)
    try:
        async def send(raw: bytes) -> str:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
                _, reply = await smtp.sendmail("alice@example.org", [SUPPORT], raw)
                return reply

        replies = await asyncio.gather(*(send(raw) for raw in mails))
        assert all(r.startswith("2.0.0 Queued as TKT-") for r in replies), replies
        together = {len(sizes) for sizes in gateway.seen}
        assert together == {1, 2}  # two 100 KB mails fit in 250 KB; a third waits
        assert all(sum(sizes) <= 250_000 for sizes in gateway.seen if len(sizes) > 1)
        assert max(max(sizes) for sizes in gateway.seen) > 250_000  # the bigger one, alone
        assert sorted(await stored(Gate(rt, port))) == sorted(mails)
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


# -- memory under a flood of stalled DATA --------------------------------------------------


def _status(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _spool_files(pid: int) -> int:
    """Unlinked files the process holds open: the DATA spooled to disk."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).endswith("(deleted)")
        except OSError:
            continue
    return count


async def _ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "helpdesk mailgate exited"
        try:
            reply, wire = await _greeting(port)
            await wire.close()
            if reply.startswith("220"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "helpdesk mailgate did not listen within 60 s"
        await asyncio.sleep(0.2)


async def _stall_mid_data(port: int, size: int) -> Wire:
    """A client that sends ``size`` bytes of a message and then nothing more."""
    wire = await Wire.open(port)
    assert (await wire.cmd("EHLO flood.example.org")).startswith("250")
    await wire.envelope()
    line = b"A" * 76 + b"\r\n"
    wire.writer.write(headers("Flood", f"flood{id(wire)}") + line * (size // len(line)))
    await wire.writer.drain()
    return wire


@pytest.mark.slow
async def test_connections_stalled_mid_data_leave_memory_bounded_and_mail_flowing(
        tmp_path: Path) -> None:
    conns, size = 20, 8 << 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = int(s.getsockname()[1])
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "{sqlite_url(tmp_path)}"\n'
                   f'[storage]\ndir = "{tmp_path / "data"}"\n'
                   f'[smtp]\nport = {free_port}\n[logging]\nlevel = "WARNING"\n')
    proc = subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(cfg),
                             "mailgate"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    flood: list[Wire] = []
    try:
        await _ready(free_port, proc)
        first = headers("Before", "before") + b"warm up\r\n"
        assert await asyncio.to_thread(_send_one, free_port, first) == {}
        before = _status(proc.pid, "VmHWM")
        flood = list(await asyncio.gather(*(_stall_mid_data(free_port, size)
                                            for _ in range(conns))))
        deadline = time.monotonic() + 60
        while _spool_files(proc.pid) < conns:  # every stalled DATA has gone to disk
            assert time.monotonic() < deadline, "the stalled DATA was not spooled to disk"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # let the server read what the sockets still hold
        normal = headers("During", "during") + b"a normal sender\r\n"
        assert await asyncio.to_thread(_send_one, free_port, normal) == {}
        growth = _status(proc.pid, "VmHWM") - before
        # Held in memory: 20 x 8 MB = 160 MB; spooled: 256 KiB a connection at most.
        assert growth < 48 << 20, f"peak RSS grew by {growth >> 20} MB"
    finally:
        for wire in flood:
            wire.writer.transport.abort()
        proc.terminate()
        proc.wait(timeout=30)
