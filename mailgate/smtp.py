"""The SMTP receiver: aiosmtpd owns the wire; our handler accepts recipients and hands off DATA.

Not an open relay: RCPT is accepted only for configured domains or addresses (550 5.7.1
otherwise). DATA is answered 250 only after `Gateway.ingest` has stored the raw bytes
and committed; any failure answers 451 4.3.0 so the sender's MTA retries.
"""

from __future__ import annotations

import asyncio
import io
import re
import ssl
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from helpdesk.config import SmtpSettings
from helpdesk.errors import TransientError
from mailgate._headers import ATOM
from mailgate.ingest import Gateway
from mailgate.replies import (
    R250_OK,
    R250_QUEUED,
    R250_STORED,
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


def peer_address(session: Session) -> str:
    """The client's IP address ("" on a Unix socket), for the trusted-relay check."""
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


# MAIL FROM / RCPT TO as nearly every client sends them: <dot-atom@domain> and parameters.
_PLAIN_PATH = re.compile(
    rf"\s*<((?:{ATOM}\.)*{ATOM}@(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+)>\s*(.*)", re.DOTALL)


class GatewaySMTP(SMTP):
    """aiosmtpd's server, receiving DATA into one buffer, with RFC 3463 codes on refusals."""

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
        """DATA as aiosmtpd receives it, but into one growing buffer.

        aiosmtpd keeps a ``bytearray`` per line and joins them at the end: about three
        times the message in memory (75 MB for a 25 MB mail). Here each line, unstuffed
        (RFC 5321 4.5.2), is appended to a ``BytesIO`` whose value is handed over without
        a copy. Limits and replies are aiosmtpd's: 552 past ``data_size_limit`` and 500
        for a line longer than 1,000 octets, both after the whole DATA has been read.
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
        received = await self._receive_data()
        if received is None:  # connection gone before the terminating dot: nothing to take
            return
        if isinstance(received, str):
            self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's, untyped
            await self.push(received)
            return
        self.envelope.content = self.envelope.original_content = received
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's, untyped
        await self.push("250 OK" if status is MISSING else status)

    async def _receive_data(self) -> bytes | str | None:
        """The unstuffed message, the refusal to give, or None if the client went away."""
        buffer = io.BytesIO()
        size, limit, refusal = 0, self.data_size_limit, ""
        while True:
            if self.transport is None:
                return None
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:  # longer than the reader's limit
                refusal = refusal or R500_LINE_TOO_LONG
                await self._reader.read(exc.consumed)
                continue
            except asyncio.CancelledError:  # connection reset during DATA
                self._writer.close()
                raise
            if line == b".\r\n":
                break
            size += len(line)
            if limit and size > limit:
                refusal = refusal or R552_TOO_BIG
            elif len(line) > self.line_length_limit:
                refusal = refusal or R500_LINE_TOO_LONG
            if not refusal:
                buffer.write(memoryview(line)[1:] if line.startswith(b".") else line)
        if refusal:
            return refusal
        return buffer.getvalue()


def tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key or None)
    return ctx


async def start_smtp(gateway: Gateway, settings: SmtpSettings, *, host: str | None = None,
                     port: int | None = None) -> asyncio.base_events.Server:
    """Listen on the configured address; returns the asyncio server (its sockets give the port)."""
    handler = GatewayHandler(gateway, settings)
    tls = tls_context(settings)
    loop = asyncio.get_running_loop()

    def factory() -> GatewaySMTP:
        kwargs: dict[str, Any] = {
            "data_size_limit": settings.max_message_bytes,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "ident": "helpdesk ESMTP",
        }
        if tls is not None:
            kwargs["tls_context"] = tls
            kwargs["require_starttls"] = settings.require_tls
        return GatewaySMTP(handler, **kwargs)

    server = await loop.create_server(factory, host=host or settings.host,
                                      port=settings.port if port is None else port)
    log.info("smtp.listening", addresses=[s.getsockname() for s in server.sockets])
    return server
