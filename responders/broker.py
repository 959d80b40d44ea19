"""Set up the process's one Dramatiq broker from ``[broker] url`` and bridge actors to the runtime.

``memory://`` gives a :class:`~dramatiq.brokers.stub.StubBroker` (no server; the worker
threads run in the same process, started by ``responders.service.serve``);
``redis://host:port/db`` gives a :class:`~dramatiq.brokers.redis.RedisBroker`.

The broker is the one process global we keep (dramatiq's ``set_broker``). Dramatiq binds
an actor to the global broker when the actor is declared, so :func:`setup` sets the broker
first and then (re)binds the actors it is given (``responders.actors.ACTORS``) to it;
calling it again (a test that switches from memory to Redis) moves the actors to the new
broker.

Actors run in Dramatiq's worker threads, but the database engine and the SMTP client are
asyncio objects owned by the event loop of ``serve``. :class:`RuntimeBridge`, a broker
middleware, carries that loop, the :class:`~helpdesk.runtime.Runtime` and the tuning, and
runs an actor's coroutine on the loop (``asyncio.run_coroutine_threadsafe``), blocking the
worker thread until it ends. So one process has one engine and one connection pool, and
the number of worker threads bounds how many mails are in flight at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from helpdesk.config import Settings
from helpdesk.runtime import Runtime
from responders.compose import Composer
from responders.smarthost import Smarthost

QUEUE = "outbox"
T = TypeVar("T")


def create(url: str) -> dramatiq.Broker:
    """A new broker for ``url`` (``memory://`` or ``redis://...``).

    Raises:
        ValueError: any other scheme.
    """
    if url.startswith("memory://"):
        return StubBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)  # type: ignore[no-untyped-call]
    raise ValueError(f"unsupported [broker] url {url!r}: use memory:// or redis://host:port/db")


def current() -> dramatiq.Broker:
    """The global broker; a StubBroker placeholder when none was set up yet.

    Lets :mod:`responders.actors` be imported (and its actors declared) before
    :func:`setup` runs, without dramatiq guessing a RabbitMQ or Redis broker.
    """
    broker = dramatiq.broker.global_broker
    if broker is None:
        broker = StubBroker()
        dramatiq.set_broker(broker)
    return broker


def setup(url: str, actors: Iterable[dramatiq.Actor[Any, Any]]) -> dramatiq.Broker:
    """Create the broker for ``url``, make it the global one and bind ``actors`` to it.

    The caller names the actors (``responders.actors.ACTORS``): they import this module
    for :func:`current`, so this module never imports them back.
    """
    broker = create(url)
    dramatiq.set_broker(broker)
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
    return broker


@dataclass(frozen=True)
class WorkerOptions:
    """How the relay and the senders pace themselves.

    Attributes:
        lease: how long a claimed row (``queued`` or ``sending``) belongs to its claimer;
            after that the relay claims it again (crashed worker, lost in-memory message).
            Longer than one SMTP conversation can last (6 x ``[outbound] timeout_seconds``
            by default), so a slow send is not taken over by another worker.
        poll_interval: seconds between relay scans when nothing was due.
        batch: rows claimed per scan.
        retry_base: the wait after the first temporary failure (doubles each time).
        threads: Dramatiq worker threads, i.e. mails in flight at once.
        max_in_flight: rows claimed but not finished (queued or sending) at most, across
            all relays: the broker holds no more than this (back-pressure).
    """

    lease: timedelta = timedelta(seconds=120)
    poll_interval: float = 1.0
    batch: int = 100
    retry_base: timedelta = timedelta(seconds=30)
    threads: int = 8
    max_in_flight: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        """Read optional ``[outbound]`` keys, falling back to the defaults above."""
        out = settings.outbound
        default = cls()
        return cls(
            lease=timedelta(seconds=float(out.lease_seconds or max(
                default.lease.total_seconds(), 6 * out.timeout_seconds))),
            poll_interval=float(out.relay_interval_seconds or
                                default.poll_interval),
            batch=int(out.relay_batch or default.batch),
            retry_base=timedelta(seconds=float(out.retry_base_seconds or
                                               default.retry_base.total_seconds())),
            threads=int(out.worker_threads or default.threads),
            max_in_flight=int(out.max_in_flight or default.max_in_flight),
        )


class RuntimeBridge(Middleware):
    """Gives actors (in worker threads) the runtime, its event loop, tuning and composer.

    Added to the broker by ``serve``; actors find it with :meth:`of`.

    Args:
        rt: the process runtime (settings, database, blob store, clock).
        loop: the event loop that owns ``rt``'s engine; coroutines run there.
        options: the relay and sender tuning.
        composer: the message composer, built once per process.
        smarthost: whether the smarthost answers, so that an outage is logged once.
    """

    def __init__(self, rt: Runtime, loop: asyncio.AbstractEventLoop, options: WorkerOptions,
                 composer: Composer, smarthost: Smarthost | None = None) -> None:
        self.rt = rt
        self.loop = loop
        self.options = options
        self.composer = composer
        self.smarthost = smarthost or Smarthost(rt.settings.outbound)
        self._lock = threading.Lock()
        self._unprocessed: set[int] = set()

    def enqueued(self, row_ids: Iterable[int]) -> None:
        """Note rows handed to the broker (to give back those never processed, on stop)."""
        with self._lock:
            self._unprocessed.update(row_ids)

    def processing(self, row_id: int) -> None:
        """Note that a worker took the message of ``row_id``."""
        with self._lock:
            self._unprocessed.discard(row_id)

    def unprocessed(self) -> list[int]:
        """Rows enqueued by this process whose message no worker here has taken."""
        with self._lock:
            return sorted(self._unprocessed)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runtime's loop and wait for its result in this thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    @staticmethod
    def of(broker: dramatiq.Broker) -> RuntimeBridge:
        """The bridge installed on ``broker``.

        Raises:
            RuntimeError: no bridge, i.e. the worker was not started by ``serve``.
        """
        for middleware in broker.middleware:
            if isinstance(middleware, RuntimeBridge):
                return middleware
        raise RuntimeError("no RuntimeBridge on the broker: start workers with "
                           "responders.service.serve")
