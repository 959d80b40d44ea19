"""The LMTP listener end to end: a real LMTP conversation on the wire, real receiver, real DB."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.models import InboundSpool, Message, Ticket
from helpdesk.runtime import Runtime
from mailgate.lmtp import start_lmtp
from mailgate.lmtpclient import LmtpClient
from mailgate.replies import R451_TEMPFAIL, R550_RELAY, R552_TOO_BIG
from mailgate.service import make_gateway, serve
from tests.conftest import make_settings, sqlite_url

SUPPORT = "support@support.example.com"
BILLING = "billing@support.example.com"


def mail(message_id: str = "<lmtp-1@example.org>", body: str = "It burns.") -> bytes:
    return (f"From: Alice <alice@example.org>\r\nTo: {SUPPORT}, {BILLING}\r\n"
            f"Subject: Printer on fire\r\nMessage-ID: {message_id}\r\n"
            f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n").encode()


class Wire:
    """An LMTP client that reads every reply line, so a test counts them exactly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> list[str]:
        """One reply, all its lines ("250-..." continuations and the last "250 ...")."""
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 30)).decode().rstrip()
            assert line, "connection closed"
            lines.append(line)
            if line[3:4] != "-":
                return lines

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return (await self.reply())[-1]

    async def data(self, raw: bytes, replies: int) -> list[str]:
        """Send DATA and the message; the ``replies`` final replies that follow."""
        assert (await self.command("DATA")).startswith("354")
        stuffed = b"".join(b"." + line if line.startswith(b".") else line
                           for line in raw.splitlines(keepends=True))
        self.writer.write(stuffed + b".\r\n")
        await self.writer.drain()
        return [(await self.reply())[-1] for _ in range(replies)]

    async def quit(self) -> str:
        """QUIT's reply: 221 here shows no reply line of DATA was left unread."""
        reply = await self.command("QUIT")
        self.writer.close()
        return reply


@dataclass
class Lmtp:
    rt: Runtime
    socket: Path

    async def connect(self) -> Wire:
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        wire = Wire(reader, writer)
        assert (await wire.reply())[-1].startswith("220")
        assert (await wire.command("LHLO mta.example.org")).startswith("250")
        return wire

    async def tickets(self) -> list[Ticket]:
        async with self.rt.sessions() as session:
            return list((await session.execute(
                select(Ticket).order_by(Ticket.number))).unique().scalars())


@pytest.fixture
async def lmtp(tmp_path: Path) -> AsyncIterator[Lmtp]:
    sock = tmp_path / "run" / "lmtp.sock"  # its folder is created
    settings = make_settings(
        tmp_path, sqlite_url(tmp_path), smtp={"max_message_bytes": 100_000},
        database={"busy_timeout_ms": 200},
        lmtp={"enabled": True, "socket": str(sock)},
        queues=[{"address": BILLING, "category": "billing"}])
    rt = await Runtime.open(settings)
    server = await start_lmtp(make_gateway(rt), settings.lmtp, settings.smtp)
    try:
        yield Lmtp(rt, sock)
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


async def test_two_recipients_one_ours_one_not_get_one_reply_each(lmtp: Lmtp) -> None:
    wire = await lmtp.connect()
    assert (await wire.command("MAIL FROM:<alice@example.org>")).startswith("250")
    assert (await wire.command(f"RCPT TO:<{SUPPORT}>")).startswith("250")
    assert await wire.command("RCPT TO:<victim@elsewhere.example>") == R550_RELAY
    assert await wire.data(mail(), replies=1) == ["250 2.0.0 Queued as TKT-000001"]
    assert (await wire.quit()).startswith("221")
    assert len(await lmtp.tickets()) == 1


async def test_mail_to_two_of_our_addresses_is_one_ticket_with_a_reply_for_each(
        lmtp: Lmtp) -> None:
    wire = await lmtp.connect()
    await wire.command("MAIL FROM:<alice@example.org>")
    assert (await wire.command(f"RCPT TO:<{SUPPORT}>")).startswith("250")
    assert (await wire.command(f"RCPT TO:<{BILLING}>")).startswith("250")
    assert await wire.data(mail(), replies=2) == ["250 2.0.0 Queued as TKT-000001"] * 2
    assert (await wire.quit()).startswith("221")
    [ticket] = await lmtp.tickets()
    assert ticket.category == "billing"  # the first configured queue among the recipients
    async with lmtp.rt.sessions() as session:
        [row] = (await session.execute(select(InboundSpool))).scalars()
    assert row.via == "lmtp"


async def test_envelope_recipient_chooses_the_queue_the_headers_do_not_name(
        lmtp: Lmtp) -> None:
    wire = await lmtp.connect()
    await wire.command("MAIL FROM:<alice@example.org>")
    await wire.command(f"RCPT TO:<{BILLING}>")
    raw = mail().replace(f"To: {SUPPORT}, {BILLING}".encode(), b"To: undisclosed-recipients:;")
    assert await wire.data(raw, replies=1) == ["250 2.0.0 Queued as TKT-000001"]
    await wire.quit()
    [ticket] = await lmtp.tickets()
    assert ticket.category == "billing"


async def test_locked_database_defers_every_recipient(lmtp: Lmtp, tmp_path: Path) -> None:
    locker = sqlite3.connect(tmp_path / "helpdesk.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        wire = await lmtp.connect()
        await wire.command("MAIL FROM:<alice@example.org>")
        await wire.command(f"RCPT TO:<{SUPPORT}>")
        await wire.command(f"RCPT TO:<{BILLING}>")
        assert await wire.data(mail(), replies=2) == [R451_TEMPFAIL] * 2
        assert (await wire.quit()).startswith("221")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert await lmtp.tickets() == []


async def test_too_big_is_refused_for_every_recipient(lmtp: Lmtp) -> None:
    wire = await lmtp.connect()
    await wire.command("MAIL FROM:<alice@example.org>")
    await wire.command(f"RCPT TO:<{SUPPORT}>")
    await wire.command(f"RCPT TO:<{BILLING}>")
    big = mail(body=("x" * 70 + "\r\n") * 2000)
    assert await wire.data(big, replies=2) == [R552_TOO_BIG] * 2
    assert (await wire.quit()).startswith("221")


async def test_replies_before_data_are_single_lines_as_in_smtp(lmtp: Lmtp) -> None:
    wire = await lmtp.connect()
    await wire.command("MAIL FROM:<alice@example.org>")
    await wire.command(f"RCPT TO:<{SUPPORT}>")
    await wire.command(f"RCPT TO:<{BILLING}>")
    assert (await wire.command("DATA extra")).startswith("501")
    assert (await wire.command("NOOP")).startswith("250")
    assert (await wire.command("HELO mta.example.org")).startswith("500")
    assert (await wire.quit()).startswith("221")


async def test_mailgate_role_serves_lmtp_over_tcp_when_enabled(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(tmp_path, sqlite_url(tmp_path), smtp={"enabled": False},
                             lmtp={"enabled": True, "host": "127.0.0.1", "port": port})
    rt = await Runtime.open(settings)
    stop = asyncio.Event()
    role = asyncio.create_task(serve(rt, stop))
    try:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("LMTP never listened")
        wire = Wire(reader, writer)
        assert (await wire.reply())[-1].startswith("220")
        assert (await wire.command("LHLO mta.example.org")).startswith("250")
        await wire.command("MAIL FROM:<alice@example.org>")
        await wire.command(f"RCPT TO:<{SUPPORT}>")
        assert await wire.data(mail(), replies=1) == ["250 2.0.0 Queued as TKT-000001"]
        await wire.quit()
    finally:
        stop.set()
        await asyncio.wait_for(role, 30)
        await rt.close()


async def test_a_mail_past_the_memory_threshold_is_spooled_and_stored_whole(
        tmp_path: Path) -> None:
    sock = tmp_path / "big.sock"
    settings = make_settings(tmp_path, sqlite_url(tmp_path),
                             smtp={"data_in_memory_bytes": 4096},
                             lmtp={"enabled": True, "socket": str(sock)})
    rt = await Runtime.open(settings)
    server = await start_lmtp(make_gateway(rt), settings.lmtp, settings.smtp)
    try:
        wire = await Lmtp(rt, sock).connect()
        await wire.command("MAIL FROM:<alice@example.org>")
        await wire.command(f"RCPT TO:<{SUPPORT}>")
        body = "\r\n".join(f"line {i} " + "x" * 60 for i in range(3000))
        assert await wire.data(mail(body=body), replies=1) == ["250 2.0.0 Queued as TKT-000001"]
        await wire.quit()
        async with rt.sessions() as session:
            [message] = (await session.execute(select(Message))).scalars()
        assert "line 2999 " in message.full_text
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


async def test_a_stale_socket_from_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    import socket

    sock = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # bound, then its process is gone
        stale.bind(str(sock))
    settings = make_settings(tmp_path, sqlite_url(tmp_path),
                             lmtp={"enabled": True, "socket": str(sock)})
    rt = await Runtime.open(settings)
    server = await start_lmtp(make_gateway(rt), settings.lmtp, settings.smtp)
    try:
        wire = await Lmtp(rt, sock).connect()
        assert (await wire.quit()).startswith("221")
        assert oct(sock.stat().st_mode & 0o777) == oct(0o660)
    finally:
        server.close()
        await server.wait_closed()
        await rt.close()


# The pipe's own client (`helpdesk ingest` hands over with it) against the real listener.


async def test_the_pipes_client_delivers_dot_lines_intact_with_a_reply_per_recipient(
        lmtp: Lmtp) -> None:
    body = ".starts with a dot\r\n..two dots\r\n.\r\nafter a lone dot"
    client = await asyncio.to_thread(LmtpClient.connect, str(lmtp.socket), "", 0, timeout=30)
    try:
        replies = await asyncio.to_thread(client.send, "alice@example.org",
                                          [SUPPORT, BILLING], mail(body=body))
        await asyncio.to_thread(client.quit)
    finally:
        client.close()
    assert replies == [(250, "2.0.0 Queued as TKT-000001")] * 2
    async with lmtp.rt.sessions() as session:
        [message] = (await session.execute(select(Message))).scalars()
    assert body.replace("\r\n", "\n") in message.full_text.replace("\r\n", "\n")


async def test_the_pipes_client_stops_at_the_first_refusal(lmtp: Lmtp) -> None:
    client = await asyncio.to_thread(LmtpClient.connect, str(lmtp.socket), "", 0, timeout=30)
    try:
        replies = await asyncio.to_thread(client.send, "alice@example.org",
                                          [SUPPORT, "someone@elsewhere.example"], mail())
        # the session is still good: the next mail goes through
        again = await asyncio.to_thread(client.send, "alice@example.org", [SUPPORT],
                                        mail("<lmtp-2@example.org>"))
    finally:
        client.close()
    assert [code for code, _ in replies] == [int(R550_RELAY.split()[0])]
    assert again == [(250, "2.0.0 Queued as TKT-000001")]
    assert len(await lmtp.tickets()) == 1
