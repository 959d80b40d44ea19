"""Benchmark: the SMTP port flooded with connections stalled mid-DATA; memory and service.

    python bench/smtp_flood.py [--connections 40] [--megabytes 25] [--src TREE]

Starts `helpdesk mailgate` on SQLite in a temporary folder (from ``--src``, another
checkout of the code, to compare before and after a change), sends one mail to warm it
up, then opens ``--connections`` SMTP connections from loopback that each send
``--megabytes`` MB of one message and then stall before the terminating dot. While they
hang, a normal sender sends one mail and must get 250. Prints the daemon's resident
memory (VmRSS) and its peak (VmHWM) before and under the attack, how many of the stalled
transfers it holds on disk, and the normal sender's reply and time.

Stalled connections stay within [smtp] max_connections_per_client (50 by default); run
with more and the rest are refused with 421, which the output counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RCPT = "support@support.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def spooled(pid: int) -> int:
    """Unlinked files the daemon holds open: DATA spooled to disk."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).endswith("(deleted)")
        except OSError:
            continue
    return count


def mail(subject: str, body: bytes) -> bytes:
    return (f"From: bench <bench@example.org>\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}.{time.time_ns()}@example.org>\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n").encode() + body


async def reply(reader: asyncio.StreamReader) -> str:
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), 60)).decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  line: str) -> str:
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    return await reply(reader)


async def send(port: int, raw: bytes) -> str:
    """One whole mail; the final reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(reader)
        await command(reader, writer, "EHLO bench.example.org")
        await command(reader, writer, "MAIL FROM:<bench@example.org>")
        await command(reader, writer, f"RCPT TO:<{RCPT}>")
        await command(reader, writer, "DATA")
        writer.write(raw + b".\r\n")
        await writer.drain()
        answer = await reply(reader)
        await command(reader, writer, "QUIT")
        return answer
    finally:
        writer.close()


async def stall(port: int, size: int) -> asyncio.StreamWriter | str:
    """Send ``size`` bytes of one message and stop; the open writer, or the refusal."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = await reply(reader)
    if not greeting.startswith("220"):
        writer.close()
        return greeting
    await command(reader, writer, "EHLO flood.example.org")
    await command(reader, writer, "MAIL FROM:<flood@example.org>")
    await command(reader, writer, f"RCPT TO:<{RCPT}>")
    await command(reader, writer, "DATA")
    line = b"A" * 76 + b"\r\n"
    writer.write(mail("flood", b""))
    for _ in range(size // len(line) // 1024):
        writer.write(line * 1024)
        await writer.drain()
    return writer


async def finish(writer: asyncio.StreamWriter) -> str:
    """End a stalled message with CRLF.CRLF; the server's reply."""
    reader = writer.transport.get_protocol()._stream_reader  # type: ignore[attr-defined]
    writer.write(b"\r\n.\r\n")
    await writer.drain()
    return await reply(reader)


async def ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reply(reader)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise SystemExit("helpdesk mailgate did not start")


def mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB"


async def run(args: argparse.Namespace, work: Path) -> None:
    port = free_port()
    cfg = work / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{work / "hd.db"}"\n'
                   f'[storage]\ndir = "{work / "data"}"\n[smtp]\nport = {port}\n'
                   '[instance]\nadmin_email = "admin@example.org"\n'
                   '[logging]\nlevel = "WARNING"\n')
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    proc = subprocess.Popen([sys.executable, "-m", "helpdesk", "--config", str(cfg),
                             "mailgate"], cwd=work, env=env, stdout=subprocess.DEVNULL)
    writers: list[asyncio.StreamWriter] = []
    try:
        await ready(port, proc)
        warm = await send(port, mail("warm up", b"hello\r\n"))
        print(f"warm-up mail: {warm}")
        rss0, hwm0 = status(proc.pid, "VmRSS"), status(proc.pid, "VmHWM")
        print(f"before: RSS {mb(rss0)}, peak {mb(hwm0)}")
        started = time.monotonic()
        results = await asyncio.gather(*(stall(port, args.megabytes << 20)
                                         for _ in range(args.connections)))
        writers = [w for w in results if isinstance(w, asyncio.StreamWriter)]
        refused = [r for r in results if isinstance(r, str)]
        await asyncio.sleep(args.settle)
        print(f"{len(writers)} connections stalled mid-DATA with {args.megabytes} MB each "
              f"({len(refused)} refused{': ' + refused[0] if refused else ''}), "
              f"sent in {time.monotonic() - started:.1f} s")
        rss1 = status(proc.pid, "VmRSS")
        print(f"under attack: RSS {mb(rss1)}, peak {mb(status(proc.pid, 'VmHWM'))}, "
              f"spooled to disk: {spooled(proc.pid)}")
        started = time.monotonic()
        answer = await send(port, mail("normal sender", b"still served?\r\n"))
        print(f"normal sender: {answer!r} in {time.monotonic() - started:.2f} s")
        hwm = status(proc.pid, "VmHWM")
        print(f"peak RSS: {mb(hwm0)} before, {mb(hwm)} after "
              f"(+{mb(hwm - hwm0)} for {len(writers)} x {args.megabytes} MB stalled)")
        if args.finish:
            started = time.monotonic()
            answers = await asyncio.gather(*(finish(w) for w in writers))
            accepted = sum(a.startswith("250") for a in answers)
            print(f"then all {len(writers)} finished at once: {accepted} accepted in "
                  f"{time.monotonic() - started:.1f} s, peak RSS "
                  f"{mb(status(proc.pid, 'VmHWM'))}")
    finally:
        for w in writers:
            w.transport.abort()
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=40)
    ap.add_argument("--megabytes", type=int, default=25)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to let the daemon read what the sockets hold")
    ap.add_argument("--finish", action="store_true",
                    help="then end all stalled messages at once (40 x 25 MB to ingest)")
    ap.add_argument("--src", help="run the daemon from this source tree (PYTHONPATH)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smtp-flood-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
