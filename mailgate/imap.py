"""The IMAP receiver: one poller per configured mailbox feeds new messages to `Gateway.ingest`.

What happens to a message in the watched folder:

1. **Find** it by UID: every round asks for UIDs above the last one fully handled
   (`imap_state.last_uid`, per UIDVALIDITY). A changed UIDVALIDITY means the old UIDs are
   meaningless, so the folder is rescanned from the start; messages seen before are
   recognised by the pipeline's Message-ID + content key and not applied twice.
2. **Fetch** the raw bytes with ``BODY.PEEK[]`` (the server's \\Seen flag stays untouched)
   and hand them to `Gateway.ingest(raw, "imap")`.
3. **Acknowledge**, only after ingest returned (its transaction committed): move the
   message to ``processed_folder`` (MOVE, else COPY + \\Deleted + EXPUNGE), or flag it
   \\Seen when none is set; a quarantined message goes to ``quarantine_folder`` when set.
   A `TransientError` leaves the message where it is, and the next round tries it again
   (``last_uid`` does not pass it). A crash between commit and move only means the next
   round sees the message again and the pipeline answers "duplicate". A server that dies
   inside its own MOVE (a copy, then an expunge) can leave a message in both folders; it
   is moved again, so the processed folder may hold that one mail twice. Tickets are
   never doubled: the pipeline's key decides that, not the folder.
4. **Wait** for news: IDLE when the server offers it (woken by EXISTS), bounded by
   ``poll_interval`` as a safety net; plain polling every ``poll_interval`` otherwise.

Only the holder of the mailbox's lease (`mailgate._imap_lease`) polls it, so several
`mailgate` processes never work one mailbox at once; the others wait and take over when the
lease expires. Connection loss, a refused login or a restarting server never end the
poller: it logs one line per attempt and retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32

import structlog
from sqlalchemy.exc import SQLAlchemyError

from helpdesk.config import ImapSettings
from helpdesk.errors import TransientError
from mailgate import _imap_lease as lease
from mailgate._imap_conn import ConnectionLost, ImapConnection, ImapError, LoginFailed
from mailgate._imap_lease import LeaseLost, MailboxState
from mailgate.ingest import Gateway, IngestResult

log = structlog.get_logger("mailgate.imap")
_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class PollerTuning:
    """Timings of a poller; the defaults suit production, tests pass small ones.

    Attributes:
        backoff_initial: first wait after a failed connection or login, in seconds.
        backoff_cap: the longest wait between attempts.
        lease_seconds: how long a lease lasts unless renewed; a crashed holder's mailbox is
            taken over after at most this long.
        command_timeout: how long one IMAP command may take before the connection is
            considered dead.
        ingest_window: how many fetched messages may be in the pipeline at once (they
            share its group commit); 1 ingests strictly one after another.
        ignore_capabilities: capabilities to act as if the server lacked (e.g. a broken
            MOVE); also how tests exercise the fallbacks.
    """

    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    lease_seconds: float = 60.0
    command_timeout: float = 30.0
    ingest_window: int = 8
    ignore_capabilities: frozenset[str] = frozenset()


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): doubling, capped."""
    return float(min(cap, initial * 2 ** max(0, attempt - 1)))


def mailbox_key(settings: ImapSettings) -> str:
    """The `imap_state` key of a mailbox: user, server and folder."""
    return f"{settings.username}@{settings.host}:{settings.port}/{settings.folder}"[:500]


def default_holder() -> str:
    """A holder id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class PollerStats:
    """Counters for logs, `imap check` and tests."""

    ingested: int = 0
    by_disposition: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    connects: int = 0
    failures: int = 0


class ImapPoller:
    """Polls one mailbox until stopped; `run` never raises for server or network trouble."""

    def __init__(self, gateway: Gateway, settings: ImapSettings, *, holder: str | None = None,
                 tuning: PollerTuning | None = None) -> None:
        self.gateway = gateway
        self.settings = settings
        self.holder = holder or default_holder()
        self.tuning = tuning or PollerTuning()
        self.mailbox = mailbox_key(settings)
        self.stats = PollerStats()
        self._ttl = timedelta(seconds=self.tuning.lease_seconds)
        self._renew_at = 0.0
        self._log = log.bind(mailbox=self.mailbox, holder=self.holder)

    # -- the outer loop: lease, connect, back off -----------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the mailbox until ``stop`` is set; gives the lease up on the way out."""
        attempt = 0
        waiting_logged = False
        try:
            while not stop.is_set():
                if not await self._acquire():
                    if not waiting_logged:
                        waiting_logged = await self._log_waiting()
                    await _sleep(stop, min(self.tuning.lease_seconds / 3,
                                           self.settings.poll_interval))
                    continue
                if waiting_logged:
                    self._log.info("imap.lease_taken")
                    waiting_logged = False
                connects = self.stats.connects
                try:
                    await self._serve_connection(stop)
                    attempt = 0
                    continue
                except LeaseLost:
                    self._log.warning("imap.lease_lost")
                    continue
                except Exception as exc:  # never a crashed process: log, back off, retry
                    was_connected = self.stats.connects > connects
                    attempt = 1 if was_connected else attempt + 1
                    self._log_failure(exc, was_connected, attempt)
                await _sleep(stop, backoff_delay(attempt, self.tuning.backoff_initial,
                                                 self.tuning.backoff_cap))
        finally:
            try:
                await lease.release(self.gateway.rt.sessions, self.mailbox, self.holder)
            except Exception as exc:  # the lease then simply expires
                self._log.warning("imap.release_failed", error=type(exc).__name__)
            self._log.info("imap.stopped", ingested=self.stats.ingested)

    def _log_failure(self, exc: Exception, was_connected: bool, attempt: int) -> None:
        """One log line per failed attempt: what went wrong and when the next try is."""
        self.stats.failures += 1
        delay = backoff_delay(attempt, self.tuning.backoff_initial, self.tuning.backoff_cap)
        if isinstance(exc, ImapError | TransientError | OSError | SQLAlchemyError):
            error = type(exc).__name__ if isinstance(exc, SQLAlchemyError) else (
                str(exc) or type(exc).__name__)
            self._log.warning(_failure_event(exc, was_connected), error=error,
                              attempt=attempt, retry_in=delay)
        else:
            self._log.error("imap.poller_failed", error=type(exc).__name__, attempt=attempt,
                            retry_in=delay, exc_info=exc)

    async def _acquire(self) -> bool:
        try:
            won = await lease.acquire(self.gateway.rt.sessions, self.mailbox, self.holder,
                                      self.gateway.rt.clock(), self._ttl)
        except Exception as exc:
            self._log.warning("imap.lease_unavailable", error=type(exc).__name__)
            return False
        if won:
            self._renew_at = time.monotonic() + self.tuning.lease_seconds / 3
        return won

    async def _log_waiting(self) -> bool:
        """Say once who holds the lease we wait for; False when the database did not answer."""
        try:
            holder, until = await lease.current_holder(self.gateway.rt.sessions, self.mailbox)
        except Exception:
            return False
        if holder:
            self._log.info("imap.lease_waiting", current=holder,
                           until=until.isoformat() if until else None)
        return True

    async def _checkpoint(self, state: MailboxState) -> None:
        await lease.checkpoint(self.gateway.rt.sessions, self.mailbox, self.holder, state,
                               self.gateway.rt.clock(), self._ttl)
        self._renew_at = time.monotonic() + self.tuning.lease_seconds / 3

    # -- one connection -------------------------------------------------------------------

    async def _serve_connection(self, stop: asyncio.Event) -> None:
        s = self.settings
        conn = await ImapConnection.open(s, timeout=self.tuning.command_timeout,
                                         ignore_capabilities=self.tuning.ignore_capabilities)
        self.stats.connects += 1
        try:
            for folder in (s.processed_folder, s.quarantine_folder):
                if folder and await conn.ensure_folder(folder):
                    self._log.info("imap.folder_created", folder=folder)
            uidvalidity = await conn.select(s.folder)
            state = await lease.read_state(self.gateway.rt.sessions, self.mailbox)
            if state.uidvalidity != uidvalidity:
                if state.uidvalidity:
                    self._log.warning("imap.uidvalidity_changed", old=state.uidvalidity,
                                      new=uidvalidity)
                state = MailboxState(uidvalidity, 0)
            await self._checkpoint(state)
            self._log.info("imap.connected", folder=s.folder, last_uid=state.last_uid,
                           idle=conn.has("IDLE"), move=conn.has("MOVE"))
            while not stop.is_set():
                state = await self._sync(conn, state, stop)
                await self._checkpoint(state)
                if stop.is_set():
                    break
                await conn.wait_for_news(self._wait_seconds(), stop)
        finally:
            await conn.close()

    def _wait_seconds(self) -> float:
        return max(0.05, min(self.settings.poll_interval,
                             self._renew_at - time.monotonic()))

    async def _sync(self, conn: ImapConnection, state: MailboxState,
                    stop: asyncio.Event) -> MailboxState:
        """Ingest and acknowledge every message above ``state.last_uid``; the new state.

        Up to ``tuning.ingest_window`` messages are ingested concurrently (the pipeline
        commits them together), but they are acknowledged strictly in UID order, and a
        message waits for any in-flight message it replies to. ``last_uid`` advances only
        over handled messages, so one that failed temporarily (and every UID above it)
        is looked at again next round.
        """
        watermark, blocked = state.last_uid, False
        window: deque[tuple[int, asyncio.Task[IngestResult | None] | None]] = deque()
        in_flight: dict[str, asyncio.Task[IngestResult | None]] = {}

        async def settle_oldest() -> None:
            nonlocal watermark, blocked
            uid, task = window.popleft()
            # None: expunged meanwhile (by a person, or an earlier move), nothing to do
            handled = task is None or await self._finish(conn, uid, await task)
            if handled and not blocked:
                watermark = uid
            else:
                blocked = True

        try:
            for uid in await conn.uids_after(state.last_uid):
                if stop.is_set():
                    break
                if time.monotonic() >= self._renew_at:
                    await self._checkpoint(MailboxState(state.uidvalidity, watermark))
                raw = await conn.fetch(uid)
                task = None
                if raw is not None:
                    message_id, refs = message_ids(raw)
                    deps = [in_flight[r] for r in refs if r in in_flight]
                    task = asyncio.create_task(self._ingest(uid, raw, deps))
                    if message_id:
                        in_flight[message_id] = task
                window.append((uid, task))
                while window and (len(window) >= self.tuning.ingest_window
                                  or window[0][1] is None or window[0][1].done()):
                    await settle_oldest()
            while window:
                await settle_oldest()
        finally:
            if window:  # connection trouble: let committed work finish; acked next round
                await asyncio.gather(*(t for _, t in window if t is not None),
                                     return_exceptions=True)
        return MailboxState(state.uidvalidity, watermark)

    async def _ingest(self, uid: int, raw: bytes,
                      after: list[asyncio.Task[IngestResult | None]]) -> IngestResult | None:
        """Run one message through the pipeline; None when it must be tried again."""
        if after:
            await asyncio.gather(*after, return_exceptions=True)
        recipients = [self.settings.queue] if self.settings.queue else []
        try:
            return await self.gateway.ingest(raw, "imap", recipients=recipients)
        except TransientError as exc:
            self._log.warning("imap.ingest_deferred", uid=uid, reason=str(exc))
        except Exception as exc:
            self._log.error("imap.ingest_failed", uid=uid, error=type(exc).__name__,
                            exc_info=exc)
        self.stats.deferred += 1
        return None

    async def _finish(self, conn: ImapConnection, uid: int, result: IngestResult | None) -> bool:
        """Acknowledge an ingested message; False when it stays for the next round."""
        if result is None:
            return False
        self.stats.ingested += 1
        self.stats.by_disposition[result.disposition] = (
            self.stats.by_disposition.get(result.disposition, 0) + 1)
        await self._acknowledge(conn, uid, result)
        return True

    async def _acknowledge(self, conn: ImapConnection, uid: int, result: IngestResult) -> None:
        s = self.settings
        target = s.processed_folder
        if result.disposition == "quarantined" and s.quarantine_folder:
            target = s.quarantine_folder
        if target:
            await conn.move(uid, target)
        else:
            await conn.mark_seen(uid)
        self._log.debug("imap.acknowledged", uid=uid, disposition=result.disposition,
                        ticket=result.ticket, folder=target or None)


def message_ids(raw: bytes) -> tuple[str | None, list[str]]:
    """The Message-ID of ``raw`` and the ids it answers (In-Reply-To, References)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    headers = BytesHeaderParser(policy=compat32).parsebytes(head + b"\n\n")
    own = _MSGID.findall(str(headers.get("Message-ID", "")))
    refs = _MSGID.findall(f"{headers.get('In-Reply-To', '')} {headers.get('References', '')}")
    return (own[0] if own else None), refs


def _failure_event(exc: BaseException, was_connected: bool) -> str:
    if isinstance(exc, LoginFailed):
        return "imap.login_failed"
    if isinstance(exc, ConnectionLost | OSError):
        return "imap.connection_lost" if was_connected else "imap.connect_failed"
    if isinstance(exc, TransientError | SQLAlchemyError):
        return "imap.database_unavailable"
    return "imap.server_error"


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_pollers(gateway: Gateway, mailboxes: tuple[ImapSettings, ...] | list[ImapSettings],
                      stop: asyncio.Event, *, tuning: PollerTuning | None = None,
                      holder: str | None = None) -> None:
    """Run one `ImapPoller` per configured mailbox until ``stop`` is set."""
    holder = holder or default_holder()
    pollers = [
        ImapPoller(gateway, m, holder=holder,
                   tuning=tuning or dataclasses.replace(PollerTuning(),
                                                        lease_seconds=m.lease_seconds))
        for m in mailboxes
    ]
    await asyncio.gather(*(p.run(stop) for p in pollers))
