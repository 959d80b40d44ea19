"""The mailgate role: the SMTP receiver (and configured IMAP pollers) until told to stop."""

from __future__ import annotations

import asyncio

import structlog

from helpdesk.notify import Notifier
from helpdesk.runtime import Runtime
from mailgate.ingest import Gateway
from mailgate.smtp import start_smtp

log = structlog.get_logger("mailgate.service")


def make_gateway(rt: Runtime) -> Gateway:
    return Gateway(rt, listeners=[Notifier(rt)])


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    gateway = make_gateway(rt)
    server = None
    if rt.settings.smtp.enabled:
        server = await start_smtp(gateway, rt.settings.smtp)
    try:
        await stop.wait()
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
