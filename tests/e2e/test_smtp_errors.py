"""Unexpected errors in the SMTP receiver answer 451 4.3.0: retry later, no exception text.

aiosmtpd's own answer to an exception is ``500 Error: (IndexError) list index out of
range``: a permanent failure for what is a fault of ours, with our internals in it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailgate._dataspool import DataSpool
from mailgate.replies import R451_TEMPFAIL
from tests.conftest import sqlite_url
from tests.e2e.test_smtp_data import Wire, headers, stored
from tests.e2e.test_smtp_gateway import Gate, _start


@pytest.fixture
async def gate(tmp_path: Path) -> AsyncIterator[Gate]:
    async for g in _start(tmp_path, sqlite_url(tmp_path),
                          smtp={"data_in_memory_bytes": 4096}):
        yield g


@pytest.mark.parametrize("command", ["MAIL FROM:a@", "MAIL FROM:carol.customer@",
                                     "MAIL FROM:<a@b.c>|RCPT TO:x@"])
async def test_an_exception_in_a_command_answers_451_without_its_text(
        gate: Gate, command: str) -> None:
    wire = await Wire.open(gate.port)
    try:
        assert (await wire.cmd("EHLO client.example.org")).startswith("250")
        *before, failing = command.split("|")
        for line in before:
            assert (await wire.cmd(line)).startswith("250")
        assert await wire.cmd(failing) == R451_TEMPFAIL
        assert (await wire.cmd("RSET")).startswith("250")  # the session goes on
        await wire.envelope()
        raw = headers("After the error", "after") + b"fine\r\n"
        assert (await wire.data(raw + b".\r\n")).startswith("250 2.0.0 Queued as TKT-")
    finally:
        await wire.close()
    assert await stored(gate) == [raw]


async def test_a_spool_that_cannot_be_written_answers_451_after_the_whole_data(
        gate: Gate, tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "data")  # the spool's folder is gone: its file cannot be made
    wire = await Wire.open(gate.port)
    try:
        assert (await wire.cmd("EHLO client.example.org")).startswith("250")
        await wire.envelope()
        # Body lines that are SMTP commands must stay data, not be run after the failure.
        body = b"RSET\r\nMAIL FROM:<mallory@example.org>\r\nQUIT\r\n" * 200
        assert await wire.data(headers("No room", "noroom") + body + b".\r\n") == R451_TEMPFAIL
        assert (await wire.cmd("NOOP")).startswith("250")
        assert (await wire.cmd("QUIT")).startswith("221")
    finally:
        await wire.close()
    assert await gate.spool() == []



async def test_a_failure_after_data_answers_451_and_leaves_no_envelope_behind(
        gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreadable(self: DataSpool) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(DataSpool, "value", unreadable)  # the spool cannot be read back
    wire = await Wire.open(gate.port)
    try:
        assert (await wire.cmd("EHLO client.example.org")).startswith("250")
        await wire.envelope()
        reply = await wire.data(headers("Unreadable", "unreadable") + b"x\r\n" * 3000 + b".\r\n")
        assert reply == R451_TEMPFAIL
        monkeypatch.undo()
        await wire.envelope()  # a new MAIL at once: no "503 nested MAIL command"
        raw = headers("Again", "again") + b"fine\r\n"
        assert (await wire.data(raw + b".\r\n")).startswith("250 2.0.0 Queued as TKT-")
    finally:
        await wire.close()
    assert await stored(gate) == [raw]
