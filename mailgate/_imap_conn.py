"""One logged-in IMAP connection, as the poller needs it: typed commands over aioimaplib.

aioimaplib leaves a command waiting until its timeout when the server goes away; here every
command also races the connection-lost callback, so a server restart is noticed at once
(`ConnectionLost`) instead of after the timeout. A refusal (`NO`/`BAD`) raises `ImapError`
with the command name and the server's text; passwords are never part of a message.
Mailbox names are sent quoted; they must be ASCII (modified UTF-7 is not implemented).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

import aioimaplib

from helpdesk.config import ImapSettings

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_MESSAGES = re.compile(rb"MESSAGES (\d+)")


class ImapError(Exception):
    """Raised when the server refuses a command or answers something we cannot use."""


class LoginFailed(ImapError):
    """Raised when the server refuses the username or password (wait, do not hammer)."""


class ConnectionLost(ImapError):
    """Raised when the connection drops or a command times out; reconnect later."""


def quote(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string (aioimaplib sends arguments verbatim)."""
    if not mailbox.isascii():
        raise ImapError(f"mailbox name {mailbox!r} is not ASCII (modified UTF-7 unsupported)")
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_password(settings: ImapSettings) -> str:
    """The password from the config, or from ``password_file`` (read at each connect)."""
    if settings.password_file:
        return Path(settings.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    return settings.password


def _text(lines: Iterable[Any]) -> str:
    return " ".join(bytes(line).decode("utf-8", "replace") for line in lines
                    if isinstance(line, bytes | bytearray))[:300]


class ImapConnection:
    """A logged-in session. Open with `ImapConnection.open`, always `close()` it."""

    def __init__(self, client: aioimaplib.IMAP4, lost: asyncio.Event, timeout: float,
                 ignore_capabilities: frozenset[str]) -> None:
        self.client = client
        self.lost = lost
        self.timeout = timeout
        self.ignore_capabilities = ignore_capabilities

    @classmethod
    async def open(cls, settings: ImapSettings, *, timeout: float = 30.0,
                   ignore_capabilities: frozenset[str] = frozenset()) -> ImapConnection:
        """Connect (TLS or STARTTLS as configured), read the greeting and log in.

        Raises:
            ConnectionLost: the server cannot be reached or stops answering.
            LoginFailed: the credentials were refused.
            ImapError: STARTTLS was refused.
        """
        lost = asyncio.Event()
        context = ssl.create_default_context() if (settings.ssl or settings.starttls) else None
        client = aioimaplib.IMAP4(settings.host, settings.port, timeout=timeout,
                                  conn_lost_cb=lambda _exc: lost.set(),
                                  ssl_context=context if settings.ssl else None)
        conn = cls(client, lost, timeout, ignore_capabilities)
        try:
            await conn._call(client.wait_hello_from_server())
            if settings.starttls and not settings.ssl:
                assert context is not None
                await conn._starttls(context, settings.host)
            response = await conn._call(client.login(settings.username, read_password(settings)))
            if response.result != "OK":
                raise LoginFailed(f"login refused: {_text(response.lines)}")
            if not response.lines or b"CAPABILITY" not in bytes(response.lines[0]):
                await conn._call(client.protocol.capability())
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _starttls(self, context: ssl.SSLContext, host: str) -> None:
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._call(protocol.execute(command))
        if response.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
        transport = await self._call(protocol.loop.start_tls(
            protocol.transport, protocol, context, server_hostname=host))
        protocol.transport = transport
        await self._call(protocol.capability())

    def has(self, capability: str) -> bool:
        """Whether the server offers ``capability`` (and we have not been told to ignore it)."""
        return (capability not in self.ignore_capabilities
                and self.client.has_capability(capability))

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        """Await one command, failing fast with `ConnectionLost` if the connection drops."""
        if self.lost.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise ConnectionLost("connection lost")
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=self.timeout + 1,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if task not in done:
            task.cancel()
            raise ConnectionLost("connection lost" if self.lost.is_set() else "command timed out")
        try:
            return task.result()
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc

    async def _ok(self, name: str, awaitable: Awaitable[Any]) -> Any:
        response = await self._call(awaitable)
        if response.result != "OK":
            raise ImapError(f"{name} failed: {response.result} {_text(response.lines)}")
        return response

    async def ensure_folder(self, folder: str) -> bool:
        """Create ``folder`` unless it exists; returns True when it was created."""
        response = await self._call(self.client.create(quote(folder)))
        if response.result == "OK":
            await self._call(self.client.subscribe(quote(folder)))
            return True
        if "ALREADYEXISTS" in _text(response.lines).upper() or await self.exists(folder):
            return False
        raise ImapError(f"CREATE {folder!r} failed: {_text(response.lines)}")

    async def exists(self, folder: str) -> bool:
        """Whether the server lists ``folder``."""
        response = await self._ok("LIST", self.client.list('""', quote(folder)))
        return any(isinstance(line, bytes) and line.startswith(b"(") for line in response.lines)

    async def message_count(self, folder: str) -> int:
        """STATUS MESSAGES of ``folder``."""
        response = await self._ok("STATUS", self.client.status(quote(folder), "(MESSAGES)"))
        match = _MESSAGES.search(b" ".join(bytes(x) for x in response.lines))
        if match is None:
            raise ImapError(f"STATUS {folder!r}: no MESSAGES in {_text(response.lines)}")
        return int(match.group(1))

    async def select(self, folder: str) -> int:
        """SELECT ``folder`` read-write; returns its UIDVALIDITY."""
        response = await self._ok("SELECT", self.client.select(quote(folder)))
        match = _UIDVALIDITY.search(b" ".join(bytes(x) for x in response.lines))
        if match is None:
            raise ImapError(f"SELECT {folder!r}: no UIDVALIDITY in the answer")
        return int(match.group(1))

    async def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid`` in the selected folder, ascending.

        ``UID SEARCH UID n:*`` also returns the highest UID when it is below n (RFC 3501
        section 6.4.8), so the answer is filtered.
        """
        response = await self._ok("UID SEARCH", self.client.uid_search(
            "UID", f"{last_uid + 1}:*", charset=None))
        uids: set[int] = set()
        for line in response.lines[:-1]:
            uids.update(int(t) for t in bytes(line).split() if t.isdigit())
        return sorted(u for u in uids if u > last_uid)

    async def fetch(self, uid: int) -> bytes | None:
        """The full raw message (BODY.PEEK[], which leaves \\Seen alone); None if expunged."""
        response = await self._ok("UID FETCH", self.client.uid("FETCH", str(uid),
                                                                "(UID BODY.PEEK[])"))
        for line in response.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def move(self, uid: int, folder: str) -> None:
        """Move one message: MOVE when offered, else COPY + \\Deleted + (UID) EXPUNGE."""
        if self.has("MOVE"):
            await self._ok("UID MOVE", self.client.uid("MOVE", str(uid), quote(folder)))
            return
        await self._ok("UID COPY", self.client.uid("COPY", str(uid), quote(folder)))
        await self._ok("UID STORE", self.client.uid("STORE", str(uid), "+FLAGS.SILENT",
                                                    "(\\Deleted)"))
        if self.has("UIDPLUS"):
            await self._ok("UID EXPUNGE", self.client.uid("EXPUNGE", str(uid)))
        else:
            await self._ok("EXPUNGE", self.client.expunge())

    async def mark_seen(self, uid: int) -> None:
        """Flag one message \\Seen (used when no processed folder is configured)."""
        await self._ok("UID STORE", self.client.uid("STORE", str(uid), "+FLAGS.SILENT",
                                                    "(\\Seen)"))

    async def noop(self) -> None:
        """NOOP: lets the server report new mail and proves the connection is alive."""
        await self._ok("NOOP", self.client.noop())

    async def wait_for_news(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait up to ``seconds`` for new mail: IDLE when offered, else sleep then NOOP.

        Returns early when ``stop`` is set or (IDLE) when the server pushes anything.

        Raises:
            ConnectionLost: the connection dropped while waiting.
        """
        if not self.has("IDLE"):
            await _wait_any(stop.wait(), self.lost.wait(), timeout=seconds)
            if self.lost.is_set():
                raise ConnectionLost("connection lost while waiting")
            if not stop.is_set():
                await self.noop()
            return
        idle = await self._call(self.client.idle_start(timeout=seconds))
        await _wait_any(self.client.wait_server_push(timeout=seconds + 1), stop.wait(),
                        self.lost.wait(), timeout=seconds + 1)
        if self.lost.is_set():
            idle.cancel()
            raise ConnectionLost("connection lost while idling")
        if self.client.has_pending_idle():
            self.client.idle_done()
        await self._call(idle)
        while not self.client.protocol.idle_queue.empty():  # pushes already acted upon
            self.client.protocol.idle_queue.get_nowait()

    def abort(self) -> None:
        """Drop the connection without a goodbye (after errors)."""
        transport = self.client.protocol.transport
        if transport is not None:
            transport.close()
        for task in (self.client._client_task, *self.client.tasks):
            task.cancel()

    async def close(self) -> None:
        """LOGOUT politely when still connected, then drop the connection."""
        if not self.lost.is_set():
            with contextlib.suppress(ImapError, TimeoutError, OSError):
                await asyncio.wait_for(self._call(self.client.logout()), 2.0)
        self.abort()


async def _wait_any(*awaitables: Awaitable[Any], timeout: float) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
