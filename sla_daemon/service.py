"""The `sla` process role: run an SLA tick every ``sla.tick_seconds`` until asked to stop.

Any number of these may run against one PostgreSQL database: ticks share the due tickets
through row locks (see :func:`sla_daemon.engine.tick`). A failed tick (database away,
say) is logged and retried at the next interval rather than ending the role.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from helpdesk.runtime import Runtime
from sla_daemon.engine import Engine, tick

log = structlog.get_logger("sla_daemon.service")


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    """Tick now, then every ``rt.settings.sla.tick_seconds``, until ``stop`` is set.

    Raises:
        ConfigError: a policy in the settings is invalid (checked once, at start).
    """
    engine = Engine(rt.settings)
    interval = max(0.01, rt.settings.sla.tick_seconds)
    log.info("sla.started", tick_seconds=interval, policies=[p.name for p in engine.policies])
    while not stop.is_set():
        if engine.settings is not rt.settings:  # a reload: new rules or statuses
            engine = Engine(rt.settings)
        try:
            await tick(rt, engine=engine)
        except Exception as exc:  # one bad tick must not end the role
            log.error("sla.tick_failed", error=type(exc).__name__, exc_info=exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    log.info("sla.stopped")
