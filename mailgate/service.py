"""The mailgate role: SMTP and LMTP receivers and one IMAP poller per mailbox, until stopped."""

from __future__ import annotations

import asyncio

import structlog

from helpdesk.runtime import Runtime
from mailgate.imap import run_pollers
from mailgate.ingest import Gateway
from mailgate.lmtp import start_lmtp
from mailgate.smtp import start_smtp

log = structlog.get_logger("mailgate.service")


def make_gateway(rt: Runtime) -> Gateway:
    return Gateway(rt)  # the runtime's listeners, registered at start-up


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    """Receive mail by SMTP, LMTP and IMAP until ``stop`` is set, then close all cleanly."""
    gateway = make_gateway(rt)
    servers = []
    pollers: asyncio.Task[None] | None = None
    if rt.settings.smtp.enabled:
        servers.append(await start_smtp(gateway, rt.settings.smtp))
    if rt.settings.lmtp.enabled:
        servers.append(await start_lmtp(gateway, rt.settings.lmtp, rt.settings.smtp))
    if rt.settings.imap:
        pollers = asyncio.create_task(run_pollers(gateway, rt.settings.imap, stop),
                                      name="imap-pollers")
    try:
        await stop.wait()
    finally:
        if pollers is not None:
            done, _ = await asyncio.wait({pollers}, timeout=10 if stop.is_set() else 0)
            if not done:
                if stop.is_set():
                    log.warning("imap.stop_timeout")
                pollers.cancel()
                await asyncio.gather(pollers, return_exceptions=True)
        for server in servers:
            server.close()
            await server.wait_closed()
