"""LMTP for an MTA in front: the SMTP receiver's handler and rules, a reply per recipient.

LMTP (RFC 2033) is the recommended hand-over from an MTA: one long-lived listener instead
of a process per mail (the pipe), and the MTA learns the fate of every recipient. It runs
on a Unix socket (``[lmtp] socket``) or TCP (``host``/``port``), with everything of the
SMTP receiver: `GatewayHandler`'s RCPT rule (ours, else 550 5.7.1, one reply each at
RCPT), its DATA hand-off to the one pipeline, and `GatewaySMTP`'s DATA reading and reply
codes. After DATA, LMTP answers once for each accepted recipient; the mail is ingested
once for all of them (one ticket for several of our addresses), so every recipient gets
the same answer: stored, or 451 to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Any, AnyStr

import structlog
from aiosmtpd.lmtp import LMTP

from helpdesk.config import LmtpSettings, SmtpSettings
from mailgate.ingest import Gateway
from mailgate.smtp import GatewayHandler, GatewaySMTP, data_options

log = structlog.get_logger("mailgate.lmtp")


class LmtpHandler(GatewayHandler):
    """The SMTP receiver's hooks; the spool row records ``via="lmtp"`` (a trusted relay)."""

    via = "lmtp"


class GatewayLMTP(LMTP, GatewaySMTP):
    """aiosmtpd's LMTP (LHLO, no HELO/EHLO) over the SMTP receiver's server class.

    The one LMTP difference on the wire, a reply per recipient after DATA, is made in
    `push`: the final reply of a DATA that got its 354 (stored, 451, 552, 500) is sent
    once for each accepted recipient. Every other reply, and DATA refused before 354
    (503 without RCPT, 501), is one line, as in SMTP.
    """

    _replies_due = 0  # accepted recipients, while a DATA transfer is under way
    _data_open = False  # 354 sent: the next reply is DATA's final one

    async def smtp_DATA(self, arg: str) -> None:
        self._replies_due = len(self.envelope.rcpt_tos) if self.envelope is not None else 0
        self._data_open = False
        try:
            await super().smtp_DATA(arg)
        finally:
            self._replies_due, self._data_open = 0, False

    async def push(self, status: AnyStr) -> None:
        if not self._replies_due:
            await super().push(status)
            return
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if text.startswith("354"):
            self._data_open = True
            await super().push(status)
            return
        if not self._data_open:
            await super().push(status)
            return
        count, self._replies_due, self._data_open = self._replies_due, 0, False
        for _ in range(count):
            await super().push(status)


async def start_lmtp(gateway: Gateway, settings: LmtpSettings,
                     smtp: SmtpSettings) -> asyncio.base_events.Server:
    """Listen on the configured Unix socket or TCP address; returns the asyncio server.

    A stale socket file from an earlier run is replaced; any other file at that path is
    left alone (the start fails with the reason). A missing folder for it is created.
    """
    handler = LmtpHandler(gateway, smtp)
    loop = asyncio.get_running_loop()
    data = data_options(gateway, smtp)  # the SMTP receiver's DATA spool, timeout and budget

    def factory() -> GatewayLMTP:
        kwargs: dict[str, Any] = {
            "data_size_limit": smtp.max_message_bytes,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "ident": "helpdesk LMTP",
            **data,
        }
        return GatewayLMTP(handler, **kwargs)

    if settings.socket:
        path = Path(settings.socket)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        server = await loop.create_unix_server(factory, path=str(path))
        os.chmod(path, settings.socket_mode)
        log.info("lmtp.listening", socket=str(path), mode=oct(settings.socket_mode))
        return server
    server = await loop.create_server(factory, host=settings.host, port=settings.port)
    log.info("lmtp.listening", addresses=[s.getsockname() for s in server.sockets])
    return server
