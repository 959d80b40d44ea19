"""Say once, clearly, when the smarthost cannot be reached, and once when it is back.

Without this an admin whose ``[outbound]`` points at nothing sees either silence (the
worker starts, mail waits) or one warning per row and retry, which buries the cause. The
worker probes the smarthost at start; afterwards each connection failure of a delivery
is reported here, and only the change from reachable to unreachable (or back) is logged
as a warning (or info). Per-row attempts are still recorded on the rows
(``helpdesk outbox list`` shows each waiting row with its last error) and logged at debug.

One instance per worker process; it is used on the runtime's event loop only.
"""

from __future__ import annotations

import asyncio

import aiosmtplib
import structlog

from helpdesk.config import OutboundSettings

log = structlog.get_logger("responders.smarthost")

PROBE_TIMEOUT = 10.0
"""Seconds the start-up probe waits at most, whatever ``[outbound] timeout_seconds`` says."""


class Smarthost:
    """Whether ``[outbound]`` host:port answered last time, and the one log line per change."""

    def __init__(self, settings: OutboundSettings) -> None:
        self.settings = settings
        self.reachable: bool | None = None  # None: not known yet
        self.error = ""

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def unreachable(self, error: str) -> None:
        """A connection to the smarthost failed; logs a warning only if it was not known."""
        self.error = error
        if self.reachable is False:
            return
        self.reachable = False
        log.warning("outbound.smarthost_unreachable", smarthost=self.where, error=error,
                    effect="mail waits in the outbox and is retried; "
                           "`helpdesk outbox list` shows it")

    def answered(self) -> None:
        """The smarthost answered (a send got a reply); logs once after an outage."""
        if self.reachable is False:
            log.info("outbound.smarthost_reachable", smarthost=self.where)
        self.reachable, self.error = True, ""

    async def probe(self) -> bool:
        """Connect, read the greeting, quit; reports the result as above. Never raises."""
        out = self.settings
        client = aiosmtplib.SMTP(hostname=out.host, port=out.port, use_tls=out.tls,
                                 start_tls=False,
                                 timeout=min(out.timeout_seconds, PROBE_TIMEOUT))
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.unreachable(f"{type(exc).__name__}: {exc}")
            return False
        try:
            await asyncio.wait_for(client.quit(), PROBE_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
        self.answered()
        log.debug("outbound.smarthost_answered", smarthost=self.where)
        return True
