"""DATA on the wire: `GatewaySMTP.smtp_DATA` ends, unstuffs and refuses exactly as aiosmtpd does.

The one difference allowed: aiosmtpd counts a line up to CRLF, so a message with bare LF
line endings over 1,000 octets is one over-long "line" (500, permanent); ours counts up to
each LF and accepts it. Both servers read the same bytes from a real `asyncio.StreamReader`
(aiosmtpd's own limit) and must stop at the same place: only CRLF.CRLF ends DATA.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.smtp import GatewaySMTP

LINE_LIMIT = 1001  # aiosmtpd's line_length_limit: 999 octets and CRLF
TOKENS = [b"a", b"bc", b" ", b".", b"..", b"\r", b"\n", b"\r\n", b".\r\n", b"\r\n.\r\n",
          b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"x" * 300, b"y" * 998, b"z" * 1500,
          b"\xc3\xa9"]
AFTER = b"QUIT\r\n"


class _Capture:
    def __init__(self) -> None:
        self.content: bytes | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.content = envelope.original_content
        return "250 OK"


class _Replies:
    """push() collects replies instead of writing to a socket."""

    replies: list[str]

    async def push(self, status: Any) -> None:
        self.replies.append(status if isinstance(status, str) else status.decode())


class Theirs(_Replies, SMTP):
    pass


class Ours(_Replies, GatewaySMTP):
    pass


async def _data(cls: type[SMTP], wire: bytes, size_limit: int, **kwargs: Any
                ) -> tuple[str, bytes | None, bytes]:
    """(reply code, message as the handler got it, bytes left unread after DATA)."""
    handler = _Capture()
    server = cls(handler, data_size_limit=size_limit, decode_data=False, **kwargs)
    server.replies = []  # type: ignore[attr-defined]
    reader = asyncio.StreamReader(limit=server.line_length_limit)
    reader.feed_data(wire)
    reader.feed_eof()
    server._reader = reader
    server.transport = object()  # type: ignore[assignment]  # "connected"; never written to
    server.session = server._create_session()
    server.session.host_name = "client.example.org"
    server.envelope = server._create_envelope()
    server.envelope.rcpt_tos.append("support@support.example.com")
    try:
        await server.smtp_DATA("")
    finally:
        if server._timeout_handle is not None:
            server._timeout_handle.cancel()
    replies = server.replies  # type: ignore[attr-defined]
    assert replies[0].startswith("354") and len(replies) == 2
    return replies[1][:3], handler.content, await reader.read()


def _spec(wire: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """RFC 5321 4.5.2 by hand: (message, the rest after CRLF.CRLF, LF-terminated pieces)."""
    at = 0 if wire.startswith(b".\r\n") else wire.index(b"\r\n.\r\n") + 2
    data, rest = wire[:at], wire[at + 3:]
    lines = data.split(b"\r\n")[:-1]
    message = b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                       for line in lines)
    return message, rest, [piece + b"\n" for piece in data.split(b"\n")[:-1]]


def _run_both(wire: bytes, size_limit: int, tmp: Path) -> None:
    async def both() -> tuple[tuple[str, bytes | None, bytes], tuple[str, bytes | None, bytes]]:
        return (await _data(Theirs, wire, size_limit),
                await _data(Ours, wire, size_limit, spool_dir=str(tmp),
                            data_in_memory_bytes=64))

    (their_code, their_msg, their_rest), (code, msg, rest) = asyncio.run(both())
    message, spec_rest, pieces = _spec(wire)
    assert rest == their_rest == spec_rest  # the same end of DATA: no smuggling either way
    fits = not size_limit or sum(len(p) for p in pieces) <= size_limit
    if their_code == "250":
        assert (code, msg) == ("250", their_msg) and msg == message
    elif their_code == "552" and all(len(p) <= LINE_LIMIT for p in pieces):
        assert code == "552" and msg is None
    else:
        assert their_code in ("500", "552")
        if fits and all(len(p) <= LINE_LIMIT for p in pieces):
            assert (code, msg) == ("250", message)  # bare LF: each LF ends a line
        else:
            assert code in ("500", "552") and msg is None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=40),
       size_limit=st.sampled_from([0, 1500, 4000]))
def test_data_ends_unstuffs_and_refuses_as_aiosmtpd_does(
        tokens: list[bytes], size_limit: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    wire = b"".join(tokens) + b"\r\n.\r\n" + AFTER
    _run_both(wire, size_limit, tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("wire", [
    b"a\n" * 2000 + b"\r\n.\r\n" + AFTER,  # a bare-LF mail of 4,000 octets
    b"a\n.\n" + b"b\n" * 600 + b"\r\n.\r\n" + AFTER,  # LF.LF is data, not the end
    b"x" * 5000 + b".\r\n" + b"y\r\n" + b"\r\n.\r\n" + AFTER,  # a dot after a long line
    b"x" * 1001 + b"\r\n.\r\n" + AFTER,  # CR and LF split by the reader's limit
    b"x" * 1001 + b"\r.\r\n" + b"\r\n.\r\n" + AFTER,
    b"x" * 1000 + b"\r\n.\r\n" + AFTER,
    b"x" * 999 + b"\r\n" + b"y" * 1000 + b"\n\r\n.\r\n" + AFTER,
    b".\r\n" + AFTER,
    b"..\r\n.\r\n" + AFTER,
])
def test_data_edge_cases(wire: bytes, tmp_path: Path) -> None:
    _run_both(wire, 0, tmp_path)


def test_a_bare_lf_mail_is_accepted_where_aiosmtpd_refuses_it(tmp_path: Path) -> None:
    wire = b"Subject: bare\n\n" + b"line of text\n" * 200 + b"\r\n.\r\n"

    async def both() -> tuple[tuple[str, bytes | None, bytes], tuple[str, bytes | None, bytes]]:
        return (await _data(Theirs, wire, 0),
                await _data(Ours, wire, 0, spool_dir=str(tmp_path)))

    theirs, ours = asyncio.run(both())
    assert theirs[:2] == ("500", None)
    assert ours == ("250", wire[:-3], b"")
