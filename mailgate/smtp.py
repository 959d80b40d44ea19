"""The SMTP receiver: aiosmtpd owns the wire; our handler accepts recipients and hands off DATA.

Not an open relay: RCPT is accepted only for configured domains or addresses (550 5.7.1
otherwise). DATA is answered 250 only after `Gateway.ingest` has stored the raw bytes
and committed; any failure answers 451 4.3.0 so the sender's MTA retries.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
import time
from pathlib import Path
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from helpdesk.config import SmtpSettings
from helpdesk.errors import TransientError
from mailgate._connlimits import ConnectionLimits, client_key
from mailgate._dataspool import DataSpool
from mailgate._headers import ATOM
from mailgate._membudget import ByteBudget
from mailgate.ingest import Gateway
from mailgate.replies import (
    R250_OK,
    R250_QUEUED,
    R250_STORED,
    R421_DATA_TIMEOUT,
    R451_TEMPFAIL,
    R452_TOO_MANY,
    R500_LINE_TOO_LONG,
    R550_RELAY,
    R552_TOO_BIG,
)
from mailgate.routing import accepts_recipient

log = structlog.get_logger("mailgate.smtp")
MAX_RECIPIENTS = 100


class GatewayHandler:
    """aiosmtpd handler hooks; each returns the reply line and never touches the socket."""

    via = "smtp"  # recorded on the spool row; mailgate.lmtp's handler says "lmtp"

    def __init__(self, gateway: Gateway, settings: SmtpSettings) -> None:
        self.gateway = gateway
        self.settings = settings

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not accepts_recipient(self.settings, address):
            log.info("smtp.relay_denied", rcpt=address, peer=str(session.peer))
            return R550_RELAY
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return R452_TOO_MANY
        envelope.rcpt_tos.append(address)
        return R250_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            result = await self.gateway.ingest(raw or b"", self.via, recipients=envelope.rcpt_tos,
                                               envelope_sender=envelope.mail_from or "",
                                               peer=peer_address(session))
        except TransientError as exc:
            log.warning("smtp.tempfail", reason=str(exc))
            return R451_TEMPFAIL
        except Exception as exc:
            log.error("smtp.failed", error=type(exc).__name__, exc_info=exc)
            return R451_TEMPFAIL
        return R250_QUEUED.format(ref=result.ticket) if result.ticket else R250_STORED

    async def handle_exception(self, error: Exception) -> str:
        """Any error aiosmtpd catches in a command: 451, so the client retries; the text
        of the exception goes to the log, never to the client (aiosmtpd's own answer is
        ``500 Error: (IndexError) ...``, a permanent failure for a bug of ours)."""
        log.error("smtp.unexpected_error", error=type(error).__name__, exc_info=error)
        return R451_TEMPFAIL


def peer_address(session: Session) -> str:
    """The client's IP address ("" on a Unix socket), for the trusted-relay check."""
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


# MAIL FROM / RCPT TO as nearly every client sends them: <dot-atom@domain> and parameters.
_PLAIN_PATH = re.compile(
    rf"\s*<((?:{ATOM}\.)*{ATOM}@(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+)>\s*(.*)", re.DOTALL)


class GatewaySMTP(SMTP):
    """aiosmtpd's server with connection limits, DATA spooled to disk, and RFC 3463 codes.

    The overrides are small and each is tested against aiosmtpd's own behaviour:
    `_getaddr` (tests/unit/test_smtp_paths.py) and `smtp_DATA`
    (tests/unit/test_smtp_data_wire.py); everything else on the wire is aiosmtpd's.
    """

    def __init__(self, handler: Any, *, limits: ConnectionLimits | None = None,
                 budget: ByteBudget | None = None, spool_dir: str = "",
                 data_in_memory_bytes: int = 262144, data_timeout: float = 180.0,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._limits = limits
        self._budget = budget
        self._client = ""
        self._refusal: str | None = None
        self._spool_dir = spool_dir
        self._data_in_memory = data_in_memory_bytes
        self._data_timeout = data_timeout
        self._in_data = False
        self._data_seen = 0.0  # when bytes last arrived (time.monotonic)
        self._after_data: float | None = None  # when the last DATA ended

    # -- connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and self._limits is not None:  # not again after STARTTLS
            self._client = client_key(transport.get_extra_info("peername"))
            self._refusal = self._limits.admit(self._client)
            if self._refusal is not None:
                log.warning("smtp.connection_refused", peer=self._client,
                            open=self._limits.open)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            if self._limits is not None and self._refusal is None and self._client:
                self._limits.release(self._client)
                self._client = ""

    async def _handle_client(self) -> None:
        """aiosmtpd's command loop, or, over a connection limit, 421 instead of the greeting."""
        if self._refusal is None:
            await super()._handle_client()
            return
        await self.push(self._refusal)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._data_seen = time.monotonic()  # per chunk the socket gives, not per line
        super().data_received(data)

    def _timeout_cb(self) -> None:
        """aiosmtpd's idle timeout, which DATA arms with ``data_timeout``.

        In DATA the connection is cut only when nothing came for ``data_timeout``; after
        DATA, aiosmtpd's own timeout counts from its end (each command restarts it anyway).
        Checked when the timer fires rather than restarted for every chunk or command.
        """
        if self.transport is not None:
            now = time.monotonic()
            if self._in_data:
                idle = now - self._data_seen
                if idle < self._data_timeout:
                    self._reset_timeout(self._data_timeout - idle)
                    return
                log.info("smtp.data_timeout", peer=self._client, seconds=self._data_timeout)
                self._writer.write(R421_DATA_TIMEOUT.encode() + b"\r\n")
            elif self._after_data is not None:
                left = self._timeout_duration - (now - self._after_data)
                self._after_data = None
                if left > 0:
                    self._reset_timeout(left)
                    return
        super()._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd's, untyped

    # -- commands ------------------------------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing, with a shortcut for a plain ``<local@domain>``.

        aiosmtpd runs the email package's header parser (and defines a class) for every
        MAIL and RCPT: ~45 µs, a twentieth of the gateway's time per mail. The plain
        form gets the same answer from one regular expression; anything else (quoted
        local parts, source routes, literals, non-ASCII, no brackets) goes to aiosmtpd.
        """
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is None or plain.group(2).startswith("("):  # aiosmtpd drops a comment
            return super()._getaddr(arg)
        address, rest = plain.groups()
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith("552 Error"):
            await super().push(R552_TOO_BIG)
            return
        await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA as aiosmtpd receives it, but spooled (to disk past a threshold).

        aiosmtpd keeps a ``bytearray`` per line and joins them at the end: about three
        times the message in memory (75 MB for a 25 MB mail), for as long as the client
        takes. Here each line, unstuffed (RFC 5321 4.5.2), goes to a `DataSpool`. Limits
        and replies are aiosmtpd's: 552 past ``data_size_limit`` and 500 for a line longer
        than 1,000 octets, both after the whole DATA has been read; except that a line
        is counted up to each LF, so mail with bare LF line endings is accepted whatever
        its length. Only CRLF.CRLF ends DATA, as in aiosmtpd (no SMTP smuggling).
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = DataSpool(self._spool_dir, self._data_in_memory)
        self._in_data, self._data_seen = True, time.monotonic()
        self._reset_timeout(self._data_timeout)  # see `_timeout_cb`
        try:
            received = await self._receive_data(spool)
            self._in_data, self._after_data = False, time.monotonic()
            if received is None:  # connection gone before the terminating dot
                return
            if received:
                status: Any = received
            elif spool.is_on_disk and self._budget is not None:
                async with self._budget.hold(spool.size):  # large mail takes turns
                    status = await self._hand_over(spool)
            else:
                status = await self._hand_over(spool)
        finally:  # also when an error goes on to `handle_exception`: no envelope is kept
            self._in_data = False
            spool.close()
            self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's
        await self.push("250 OK" if status is MISSING else status)

    async def _hand_over(self, spool: DataSpool) -> Any:
        """The handler's answer to the message in ``spool``, read into memory once."""
        assert self.envelope is not None
        raw = await spool.value()
        spool.close()
        self.envelope.content = self.envelope.original_content = raw
        del raw
        return await self._call_handler_hook("DATA")

    async def _receive_data(self, spool: DataSpool) -> str | None:
        """Read DATA into ``spool``: "" when whole, the refusal to give, None if the client
        went away.

        Lines are read up to CRLF, as aiosmtpd does: only a CRLF line starts where a dot is
        unstuffed and ".\r\n" ends DATA. A line longer than the limit is cut into
        fragments by the reader; it is refused only if one of its LF-terminated pieces is
        too long, so bare-LF mail passes (`_lf_tail` counts them).
        """
        size, limit, refusal = 0, self.data_size_limit, ""
        line_limit = self.line_length_limit
        reader = self._reader
        write = spool.write
        watch = float(min(limit, spool.in_memory) if limit else spool.in_memory)
        open_line = False  # the last read ended inside an over-long CRLF line
        tail = 0  # then, the length of its unfinished LF piece
        while True:
            if self.transport is None:
                return None
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:  # no CRLF within the reader's limit
                line = await reader.read(exc.consumed)
                fragment = True
            except asyncio.CancelledError:  # connection reset during DATA
                self._writer.close()
                raise
            else:
                if line == b".\r\n" and not open_line:
                    return refusal
                fragment = False
            size += len(line)
            if open_line or fragment or len(line) > line_limit:  # the rare path
                tail = _lf_tail(line, tail if open_line else 0, line_limit)
                if tail < 0:
                    refusal = refusal or R500_LINE_TOO_LONG
            if size > watch:  # past the size limit or the memory threshold: both rare
                if limit and size > limit:
                    refusal, watch = refusal or R552_TOO_BIG, math.inf
                else:
                    refusal = refusal or _roll_over(spool)
                    write, watch = spool.write, float(limit or math.inf)
            if not refusal:
                try:
                    write(memoryview(line)[1:] if line.startswith(b".") and not open_line
                          else line)
                except OSError as exc:  # disk full: read on to the end, then 451
                    log.error("smtp.spool_failed", error=type(exc).__name__, exc_info=exc)
                    refusal = R451_TEMPFAIL
            open_line = fragment


def _roll_over(spool: DataSpool) -> str:
    """Move DATA to disk; the refusal to give if that fails (the folder is gone, no room)."""
    try:
        spool.roll_over()
    except OSError as exc:
        log.error("smtp.spool_failed", error=type(exc).__name__, exc_info=exc)
        return R451_TEMPFAIL
    return ""


def _lf_tail(data: bytes, tail: int, limit: int) -> int:
    """The length of the LF-terminated piece still open after ``data`` (which continues
    a piece ``tail`` bytes long so far); -1 if a piece, LF included, exceeds ``limit``."""
    start = 0
    while (lf := data.find(b"\n", start)) >= 0:
        if tail + lf + 1 - start > limit:
            return -1
        tail, start = 0, lf + 1
    return tail + len(data) - start


def tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key or None)
    return ctx


def data_options(gateway: Gateway, settings: SmtpSettings) -> dict[str, Any]:
    """`GatewaySMTP`'s DATA keywords for one listening server (its spool folder, memory
    threshold, timeout and ingest budget); an LMTP listener takes them too."""
    spool_dir = str(gateway.settings.storage.dir)
    Path(spool_dir).mkdir(parents=True, exist_ok=True)
    return {"spool_dir": spool_dir, "data_in_memory_bytes": settings.data_in_memory_bytes,
            "data_timeout": settings.data_timeout_seconds,
            "budget": ByteBudget(settings.max_ingest_bytes)}


async def start_smtp(gateway: Gateway, settings: SmtpSettings, *, host: str | None = None,
                     port: int | None = None) -> asyncio.base_events.Server:
    """Listen on the configured address; returns the asyncio server (its sockets give the port)."""
    handler = GatewayHandler(gateway, settings)
    tls = tls_context(settings)
    loop = asyncio.get_running_loop()
    limits = ConnectionLimits(settings.max_connections, settings.max_connections_per_client)
    data = data_options(gateway, settings)

    def factory() -> GatewaySMTP:
        kwargs: dict[str, Any] = {
            "data_size_limit": settings.max_message_bytes,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "ident": "helpdesk ESMTP",
            "limits": limits,
            **data,
        }
        if tls is not None:
            kwargs["tls_context"] = tls
            kwargs["require_starttls"] = settings.require_tls
        return GatewaySMTP(handler, **kwargs)

    server = await loop.create_server(factory, host=host or settings.host,
                                      port=settings.port if port is None else port)
    log.info("smtp.listening", addresses=[s.getsockname() for s in server.sockets])
    return server
