"""DATA as `GatewaySMTP.smtp_DATA` receives it: unstuffed, limited, and nothing kept on failure.

Real clients (smtplib in a thread, or raw bytes on a socket where the exact wire matters)
against the gateway on a real database, checked through the spool row and the blob store
(small mail is kept in its spool row, larger mail in the blob store).
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select

from helpdesk.models import InboundSpool, Ticket
from mailgate.replies import R552_TOO_BIG
from tests.e2e.test_smtp_gateway import SUPPORT, Gate, _start

T = TypeVar("T")
LIMIT = 200_000


@pytest.fixture
async def gate(tmp_path: Path, db_url: str) -> AsyncIterator[Gate]:
    async for g in _start(tmp_path, db_url, smtp={"max_message_bytes": LIMIT}):
        yield g


def headers(subject: str, mid: str) -> bytes:
    return (f"From: Alice <alice@example.org>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{mid}@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            "\r\n").encode()


async def with_smtp(gate: Gate, work: Callable[[smtplib.SMTP], T]) -> T:
    """Run ``work`` on a connected smtplib client in a thread (the gateway needs the loop)."""

    def run() -> T:
        with smtplib.SMTP("127.0.0.1", gate.port, timeout=30) as smtp:
            return work(smtp)

    return await asyncio.to_thread(run)


async def stored(gate: Gate) -> list[bytes]:
    return [await gate.raw(row.id) or b"" for row in await gate.spool()]


def blob_files(gate: Gate) -> list[Path]:
    return [p for p in gate.rt.store.root.rglob("*") if p.is_file()]


class Wire:
    """A raw SMTP client: exact bytes out, reply lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Wire:
        wire = cls(*await asyncio.open_connection("127.0.0.1", port))
        assert (await wire.reply()).startswith("220")
        return wire

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 30)).decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def cmd(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def envelope(self) -> None:
        assert (await self.cmd("MAIL FROM:<alice@example.org>")).startswith("250")
        assert (await self.cmd(f"RCPT TO:<{SUPPORT}>")).startswith("250")
        assert (await self.cmd("DATA")).startswith("354")

    async def data(self, wire_bytes: bytes) -> str:
        """Send DATA content already stuffed and terminated; return the final reply."""
        self.writer.write(wire_bytes)
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# -- dot-stuffing --------------------------------------------------------------------------


async def test_stuffed_lines_arrive_unstuffed_in_the_stored_message(gate: Gate) -> None:
    body = (b"..leading dot\r\n"
            b"..\r\n"
            b".\r\n"  # smtplib sends '..', a line that is one dot after unstuffing
            b"a line . with dots .\r\n"
            b"...three\r\n"
            b"last line\r\n")
    raw = headers("Dots", "dots1") + body

    def send(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return smtp.sendmail("alice@example.org", [SUPPORT], raw)

    assert await with_smtp(gate, send) == {}
    [row] = await gate.spool()
    assert row.sha256 == hashlib.sha256(raw).hexdigest() and row.size == len(raw)
    assert await gate.raw(row.id) == raw
    [ticket] = await gate.tickets()
    assert ticket.subject == "Dots" and row.ticket_id == ticket.id


async def test_the_server_unstuffs_exactly_what_is_on_the_wire(gate: Gate) -> None:
    wire = await Wire.open(gate.port)
    try:
        assert (await wire.cmd("EHLO client.example.org")).startswith("250")
        await wire.envelope()
        on_wire = (headers("Wire dots", "dots2")
                   + b"...leading dot\r\n"  # '..leading dot'
                   + b"...\r\n"  # '..'
                   + b"..\r\n"  # '.'
                   + b".unstuffed anyway\r\n"  # a lone leading dot is removed too
                   + b"tail .\r\n"
                   + b".\r\n")
        reply = await wire.data(on_wire)
        assert reply.startswith("250 2.0.0 Queued as TKT-")
        assert (await wire.cmd("QUIT")).startswith("221")
    finally:
        await wire.close()
    want = (headers("Wire dots", "dots2")
            + b"..leading dot\r\n..\r\n.\r\nunstuffed anyway\r\ntail .\r\n")
    [row] = await gate.spool()
    assert row.sha256 == hashlib.sha256(want).hexdigest()
    assert await gate.raw(row.id) == want


async def test_a_message_of_many_lines_near_the_limit_is_stored_byte_for_byte(gate: Gate
                                                                              ) -> None:
    lines = b"".join(b"%06d " % i + b"x" * 90 + b"\xc3\xa9\r\n" for i in range(1800))
    raw = headers("Many lines", "many") + lines + b"." * 998 + b"\r\n"
    assert LIMIT - 20_000 < len(raw) < LIMIT

    def send(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return smtp.sendmail("alice@example.org", [SUPPORT], raw)

    assert await with_smtp(gate, send) == {}
    assert await stored(gate) == [raw]


# -- size limit ----------------------------------------------------------------------------


async def test_a_message_over_the_limit_gets_552_and_nothing_is_stored(gate: Gate) -> None:
    big = headers("Too big", "big") + b"y" * 70 + b"\r\n" + (b"z" * 78 + b"\r\n") * 3000
    small = headers("Small after big", "small")  + b"fits\r\n"

    def send(smtp: smtplib.SMTP) -> tuple[int, bytes, dict[str, tuple[int, bytes]]]:
        smtp.helo("client.example.org")  # no ESMTP, so no SIZE: refused after DATA
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail("alice@example.org", [SUPPORT], big)
        again = smtp.sendmail("alice@example.org", [SUPPORT], small)  # same connection
        return info.value.smtp_code, info.value.smtp_error, again

    code, error, again = await with_smtp(gate, send)
    assert f"{code} {error.decode()}" == R552_TOO_BIG
    assert again == {}
    assert await stored(gate) == [small]
    assert [t.subject for t in await gate.tickets()] == ["Small after big"]
    assert blob_files(gate) == []  # the small one is in its row; nothing of the big one


async def test_a_message_just_at_the_limit_is_accepted(gate: Gate) -> None:
    head = headers("At the limit", "edge")
    line = b"q" * 98 + b"\r\n"
    count = (LIMIT - len(head)) // len(line)
    tail = b"r" * (LIMIT - len(head) - count * len(line) - 2) + b"\r\n"
    raw = head + line * count + tail
    assert len(raw) == LIMIT

    def send(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        smtp.helo("client.example.org")
        return smtp.sendmail("alice@example.org", [SUPPORT], raw)

    assert await with_smtp(gate, send) == {}
    assert await stored(gate) == [raw]


# -- line length ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1000, 5000, 150_000])
async def test_a_line_over_1000_octets_gets_500_and_the_connection_goes_on(
        gate: Gate, length: int) -> None:
    long_line = headers("Long line", f"long{length}") + b"w" * length + b"\r\nend\r\n"
    ok = headers("Next one", f"next{length}") + b"fine\r\n"

    def send(smtp: smtplib.SMTP) -> tuple[int, bytes, int, dict[str, tuple[int, bytes]]]:
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail("alice@example.org", [SUPPORT], long_line)
        rset, _ = smtp.rset()
        return info.value.smtp_code, info.value.smtp_error, rset, smtp.sendmail(
            "alice@example.org", [SUPPORT], ok)

    code, error, rset, again = await with_smtp(gate, send)
    assert code == 500 and b"Line too long" in error
    assert rset == 250 and again == {}
    assert await stored(gate) == [ok]
    assert [t.subject for t in await gate.tickets()] == ["Next one"]


async def test_a_line_of_998_octets_is_accepted(gate: Gate) -> None:
    raw = headers("Longest legal line", "legal") + b"v" * 998 + b"\r\n"

    def send(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return smtp.sendmail("alice@example.org", [SUPPORT], raw)

    assert await with_smtp(gate, send) == {}
    assert await stored(gate) == [raw]


# -- the client goes away ------------------------------------------------------------------


async def _settled(gate: Gate) -> None:
    """Give the server time to notice the lost connection and finish with it."""
    for _ in range(20):
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_client_that_drops_during_data_leaves_no_spool_row_and_no_ticket(
        gate: Gate, how: str) -> None:
    wire = await Wire.open(gate.port)
    assert (await wire.cmd("EHLO client.example.org")).startswith("250")
    await wire.envelope()
    wire.writer.write(headers("Half a mail", "half") + b"first part of the body\r\n" * 500)
    await wire.writer.drain()
    await asyncio.sleep(0.1)
    if how == "reset":
        sock = wire.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wire.writer.transport.abort()
    else:
        await wire.close()
    await _settled(gate)
    assert await gate.spool() == []
    assert await gate.tickets() == []
    assert blob_files(gate) == []

    raw = headers("Whole mail", "whole") + b"complete\r\n"

    def send(smtp: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return smtp.sendmail("alice@example.org", [SUPPORT], raw)

    assert await with_smtp(gate, send) == {}  # the server still serves
    assert await stored(gate) == [raw]
    assert await gate.count(Ticket) == 1 and await gate.count(InboundSpool) == 1


async def _raw_columns(gate: Gate) -> list[tuple[int, bytes | None]]:
    """(size, raw column) of every spool row, read as stored."""
    async with gate.rt.sessions() as session:
        rows = await session.execute(
            select(InboundSpool.size, InboundSpool.raw).order_by(InboundSpool.id))
        return [(size, None if raw is None else bytes(raw)) for size, raw in rows]


async def test_small_mail_is_kept_in_its_row_and_large_mail_in_the_blob_store(
        tmp_path: Path, db_url: str) -> None:
    async for gate in _start(tmp_path, db_url, storage={"raw_in_database_bytes": 4096}):
        small = headers("Small", "in-row") + b"short\r\n"
        large = headers("Large", "in-blob") + b"x" * 70 + b"\r\n" + (b"y" * 78 + b"\r\n") * 60

        def send(smtp: smtplib.SMTP, mails: tuple[bytes, ...] = (small, large)) -> None:
            for raw in mails:
                assert smtp.sendmail("alice@example.org", [SUPPORT], raw) == {}

        await with_smtp(gate, send)
        assert await _raw_columns(gate) == [(len(small), small), (len(large), None)]
        [blob] = blob_files(gate)
        assert blob.name == hashlib.sha256(large).hexdigest()
        assert await stored(gate) == [small, large]
        assert [t.subject for t in await gate.tickets()] == ["Small", "Large"]


async def test_with_no_room_in_the_row_every_mail_goes_to_the_blob_store(
        tmp_path: Path, db_url: str) -> None:
    async for gate in _start(tmp_path, db_url, storage={"raw_in_database_bytes": 0}):
        raw = headers("Blob", "blob-only") + b"body\r\n"
        await with_smtp(gate, lambda smtp, raw=raw: smtp.sendmail(
            "alice@example.org", [SUPPORT], raw))
        assert await _raw_columns(gate) == [(len(raw), None)]
        assert len(blob_files(gate)) == 1 and await stored(gate) == [raw]


# -- bare LF line endings ------------------------------------------------------------------


@pytest.mark.parametrize("size", [1_500, 60_000, 190_000])
async def test_a_bare_lf_mail_of_any_length_is_accepted_and_stored_as_sent(
        gate: Gate, size: int) -> None:
    head = headers("Bare LF", f"bare{size}").replace(b"\r\n", b"\n")
    body = b"".join(b"line %06d of a mail from a script\n" % i for i in range(size // 36))
    raw = head + body + b"\n.\n" + b"a dot line above is data, not the end\n"
    assert len(raw) > size - 100
    wire = await Wire.open(gate.port)
    try:
        assert (await wire.cmd("EHLO script.example.org")).startswith("250")
        await wire.envelope()
        reply = await wire.data(raw + b"\r\n.\r\n")  # only CRLF.CRLF ends DATA
        assert reply.startswith("250 2.0.0 Queued as TKT-")
        assert (await wire.cmd("QUIT")).startswith("221")
    finally:
        await wire.close()
    assert await stored(gate) == [raw + b"\r\n"]
    [ticket] = await gate.tickets()
    assert ticket.subject == "Bare LF"


async def test_a_bare_lf_line_over_1000_octets_still_gets_500(gate: Gate) -> None:
    raw = headers("Long LF line", "longlf") + b"ok\n" * 500 + b"w" * 1200 + b"\nend\r\n"
    wire = await Wire.open(gate.port)
    try:
        assert (await wire.cmd("EHLO script.example.org")).startswith("250")
        await wire.envelope()
        assert (await wire.data(raw + b".\r\n")).startswith("500 5.5.2 Line too long")
    finally:
        await wire.close()
    assert await gate.spool() == []
