"""The MTA pipe's LMTP client (RFC 2033): hand a mail to the daemon's listener (`lmtp.py`).

`smtplib.LMTP` would do, but importing it costs the pipe more CPU than the rest of a
hand-over (it brings ``ssl`` and most of the ``email`` package, and resolves our own
host name for LHLO), and an MTA starts one pipe per message. This client speaks only
what the hand-over needs, over a Unix socket or TCP: LHLO, MAIL, RCPT, DATA with one
reply per accepted recipient, QUIT. The body goes out as smtplib sends bytes: lines
that start with a dot get another, and the data ends with CRLF, dot, CRLF.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Sequence
from typing import IO

Reply = tuple[int, str]
"""A reply's code and its text (continuation lines joined by newlines)."""

_LEADING_DOT = re.compile(rb"(?m)^\.")
# A reply line longer than this is a broken peer, not a reply (RFC 5321: 512 octets).
_MAX_LINE = 8192


class LmtpError(OSError):
    """The server closed the connection or answered with something that is not a reply."""


class LmtpClient:
    """One LMTP session; every call raises `LmtpError` (an OSError) when the talk breaks."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._in: IO[bytes] = sock.makefile("rb")

    @classmethod
    def connect(cls, path: str, host: str, port: int, *, timeout: float) -> LmtpClient:
        """Connect to the Unix socket ``path`` (when given, else ``host``:``port``), greet.

        Raises:
            OSError: no listener, or a greeting other than 220 / an LHLO refused.
        """
        if path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
        client = cls(sock)
        try:
            client._expect(client.reply(), 220)
            client._expect(client.command("LHLO localhost"), 250)
        except OSError:
            client.close()
            raise
        return client

    def reply(self) -> Reply:
        """Read one reply, all of its lines."""
        lines: list[str] = []
        while True:
            line = self._in.readline(_MAX_LINE + 1)
            if not line.endswith(b"\n"):
                raise LmtpError("connection closed" if not line else "reply line too long")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            code, sep, rest = text[:3], text[3:4], text[4:]
            if not code.isdigit() or sep not in ("", " ", "-"):
                raise LmtpError(f"not an LMTP reply: {text[:80]!r}")
            lines.append(rest)
            if sep != "-":
                return int(code), "\n".join(lines)

    def command(self, line: str) -> Reply:
        """Send one command line and read its reply.

        Raises:
            LmtpError: the line holds a line break (an address from the command line or
                a header must never smuggle in a command of its own).
        """
        if "\r" in line or "\n" in line:
            raise LmtpError(f"a line break in an LMTP command: {line[:80]!r}")
        self._sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> list[Reply]:
        """Deliver ``raw`` to ``recipients``; the replies that decide its fate.

        Returns:
            The first refusal (of MAIL, a RCPT or DATA) alone, the transaction then
            reset, else one reply per recipient after the data: 250 each when the
            daemon stored the mail.
        """
        refused = self.command(f"MAIL FROM:<{sender}>")
        if refused[0] != 250:
            return [refused]
        for rcpt in recipients:
            answer = self.command(f"RCPT TO:<{rcpt}>")
            if answer[0] != 250:
                self.command("RSET")  # the session stays good for the next mail
                return [answer]
        go = self.command("DATA")
        if go[0] != 354:
            self.command("RSET")
            return [go]
        data = _LEADING_DOT.sub(b"..", raw)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self._sock.sendall(data + b".\r\n")
        return [self.reply() for _ in recipients]

    def quit(self) -> None:
        """End the session politely; a peer that no longer listens is no error here."""
        with contextlib.suppress(OSError):
            self.command("QUIT")

    def close(self) -> None:
        self._in.close()
        self._sock.close()

    @staticmethod
    def _expect(reply: Reply, code: int) -> None:
        if reply[0] != code:
            raise LmtpError(f"{reply[0]} {reply[1]}")
