"""The "worker" role: the outbox relay plus the Dramatiq workers that send mail, in one process.

``serve(rt, stop)`` sets up the broker from ``[broker] url``, installs the
:class:`~responders.broker.RuntimeBridge`, starts a :class:`dramatiq.Worker` (threads in
this process) on the ``outbox`` queue and runs the relay until ``stop`` is set. With
``memory://`` the queue lives in this process (``helpdesk run``); with ``redis://`` any
number of ``helpdesk worker`` processes share it, each also relaying (they split the rows
through row locks). Stopping: the relay ends, then the worker finishes the mails in
flight (their coroutines run on this loop, so it is stopped from a thread), rows whose
messages were still waiting in the in-memory queue go back to ``pending`` (a restart sends
them at once), and the broker closes. After a crash such rows are sent once their lease
runs out. With Redis the messages outlive the process; those a stopping worker had
prefetched come back through dramatiq's dead-worker requeue or the row lease. At start the
smarthost is probed; an unreachable one is reported in one warning
(:mod:`responders.smarthost`), not once per waiting row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import dramatiq
import structlog
from dramatiq.brokers.stub import StubBroker

from helpdesk import outbox_ops
from helpdesk.runtime import Runtime
from responders import broker as broker_mod
from responders.actors import ACTORS, send_outbox_row
from responders.broker import QUEUE, RuntimeBridge, WorkerOptions
from responders.compose import Composer
from responders.relay import run_relay

log = structlog.get_logger("responders.service")
STOP_TIMEOUT_MS = 60_000


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    """Run the relay and the senders until ``stop`` is set (the role contract)."""
    await run(rt, stop, WorkerOptions.from_settings(rt.settings))


async def run(rt: Runtime, stop: asyncio.Event, options: WorkerOptions) -> None:
    """:func:`serve` with explicit tuning (tests shorten the lease and the backoff)."""
    broker = broker_mod.setup(rt.settings.broker.url, ACTORS)

    bridge = RuntimeBridge(rt, asyncio.get_running_loop(), options,
                           Composer.from_settings(rt.settings, rt.clock))
    broker.add_middleware(bridge)

    in_memory = isinstance(broker, StubBroker)  # only then do undelivered messages die here

    def enqueue(ids: Sequence[int]) -> None:
        if in_memory:
            bridge.enqueued(ids)
        for row_id in ids:
            send_outbox_row.send(row_id)

    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=options.threads,
                             worker_timeout=100)
    worker.start()
    log.info("worker.started", broker=type(broker).__name__, threads=options.threads)
    probe = asyncio.create_task(bridge.smarthost.probe(), name="smarthost-probe")
    relay = asyncio.create_task(run_relay(rt, stop, options, enqueue), name="outbox-relay")
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([relay, stopped], return_when=asyncio.FIRST_COMPLETED)
        if relay in done:
            relay.result()
        else:  # let the relay finish its scan: a claim is never left without its enqueue
            await relay
    finally:
        for task in (stopped, relay, probe):
            task.cancel()
        await asyncio.gather(relay, stopped, probe,
                             return_exceptions=True)  # raised above if failed
        await asyncio.to_thread(worker.stop, STOP_TIMEOUT_MS)
        await _release_undelivered(rt, broker, bridge)
        broker.close()
        log.info("worker.stopped")


async def _release_undelivered(rt: Runtime, broker: dramatiq.Broker,
                               bridge: RuntimeBridge) -> None:
    """Hand rows whose messages die with an in-memory queue back to the outbox at once.

    Covers messages still in the queue and those a stopping worker had prefetched (the
    stub broker drops those). Only ``queued`` rows move; with Redis the messages persist.
    """
    if not isinstance(broker, StubBroker):
        return
    ids = bridge.unprocessed()
    if ids:
        async with rt.sessions() as session, session.begin():
            released = await outbox_ops.release(session, ids, now=rt.clock())
        log.info("worker.released", rows=released)
