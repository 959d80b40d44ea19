"""The one inbound pipeline: every receiver (SMTP, IMAP, pipe) hands raw bytes to `Gateway.ingest`.

What happens to an inbound email, in order:

1. **Spool.** The raw bytes are kept before anything is answered. A mail up to
   ``storage.raw_in_database_bytes`` (most mail) goes into its spool row, in the same
   transaction as everything below; a larger one is written to the blob store
   (content-addressed) first and synced before the transaction that records it commits
   (one sync per group-commit batch). Nothing below can lose them: a mail that fails is
   rolled back alone and then kept as quarantined in a transaction of its own.
2. **Deduplicate.** The key is the Message-ID *plus* a fingerprint of the content (From,
   Date, Subject and the body with line endings normalised), because some mailers reuse
   Message-IDs for different mail and dropping real mail is worse than keeping a
   duplicate. Mail without a Message-ID is keyed by the fingerprint alone. The key is a
   unique column of the spool row, so the same mail delivered twice, by SMTP, IMAP or the
   pipe, in any order and concurrently, makes one entry; the second delivery is
   acknowledged and reported as a duplicate.
3. **Parse.** mail-parser/stdlib into an `Inbound`; HTML sanitised. A message that cannot
   be parsed at all is kept raw as *quarantined* and acknowledged (`helpdesk spool retry`).
4. **Classify.** Auto-replies, bounces (the bounced address is marked undeliverable),
   list mail and our own looping mail make no ticket and get no response; the spool row
   records why.
5. **Identify** the sender: a contact (created on first sight, organization by domain) or
   an agent. CC addresses of a first mail become watchers.
6. **Thread** (see `mailgate.thread.decide_thread`): our signed Message-IDs, our signed
   plus-address, then known Message-IDs and the subject token, the last two only for a
   sender who takes part in that ticket. Anyone else's mail opens a new ticket, and the
   audit log says why. Mail to a merged ticket lands on its target; a reply to a Closed
   ticket opens a follow-up ticket (or reopens it, by config).
7. **Apply** in one transaction: the spool row, the message, ticket changes, audit
   events and outbox rows (acknowledgement) commit together.
8. **Acknowledge**: the receiver answers 250 / moves the IMAP message / exits 0 only
   after that commit. A temporary failure raises `TransientError` (451 / exit 75); any
   other failure quarantines the stored raw message, so it is acknowledged and kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr
from typing import Any, Literal

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import audit
from helpdesk.audit import Actor
from helpdesk.config import Settings
from helpdesk.db import CoreRow, is_transient
from helpdesk.direct import run
from helpdesk.directory import ensure_contact, find_agent, get_or_create_contact
from helpdesk.errors import DomainError, NotFoundError, NotMailError, TransientError
from helpdesk.events import Listener, TicketFacts
from helpdesk.groupcommit import GroupCommit
from helpdesk.models import Agent, Contact, InboundSpool
from helpdesk.permissions import NEW_TICKET, missing
from helpdesk.runtime import Runtime
from helpdesk.tickets import TICKET_BY_ID, TICKET_BY_NUMBER, NewAttachment, TicketService
from helpdesk.tx import Tx, discard_buffer, open_buffer, write_buffer
from mailgate import _spool
from mailgate._blobsync import BlobSyncer
from mailgate._dedupe import dedupe_key as dedupe_key  # re-exported: receivers use it
from mailgate.agent_auth import AuthResult
from mailgate.agent_mail import AgentMail, answer_queries, queries_of, refuse_unauthenticated
from mailgate.agent_mail import authenticate as authenticate_agent_mail
from mailgate.attachments import store_attachments
from mailgate.classify import Classification, classify, might_be_bounce
from mailgate.parse import Address, Inbound, parse_keyed
from mailgate.routing import Route, cc_watchers, header_recipients, resolve_queue
from mailgate.sniff import looks_like_mail
from mailgate.threading_lookup import lookup_thread

log = structlog.get_logger("mailgate.ingest")

Disposition = Literal["ticket", "reply", "ignored", "quarantined", "duplicate"]


BOUNCE_MIME_BYTES = 2 * 2**20
"""Machine-made mail up to this size is re-read as MIME for the bounce detectors; a larger
one (a bounce returning a big attachment) is judged from its parsed text alone."""


def _bounce_mime(msg: Inbound, raw: bytes) -> Message | None:
    """The stdlib message flufl.bounce reads, only for mail that may be a bounce (rare)."""
    if len(raw) > BOUNCE_MIME_BYTES or not might_be_bounce(msg):
        return None
    try:
        return message_from_bytes(raw, policy=compat32)
    except Exception:  # deep nesting (RecursionError): the parsed text will do
        return None


@dataclass(frozen=True)
class IngestResult:
    """What became of one message; receivers map it to their acknowledgement."""

    disposition: Disposition
    spool_id: int
    ticket: str | None = None
    reason: str = ""


UNKNOWN_SENDER = "unknown-sender@invalid"


@dataclass(frozen=True)
class _Job:
    """One received message on its way into the shared transaction."""

    raw: bytes
    via: str
    sha: str
    key: str
    message_id: str | None
    recipients: tuple[str, ...]
    envelope_sender: str
    via_trusted_relay: bool
    bound: Any
    msg: Inbound | None
    parse_error: str
    attachments: list[NewAttachment]
    in_row: bool  # the raw bytes go into the spool row, not the blob store


# Below this size a raw mail is written on the event loop: a write and a rename take tens of
# microseconds, less than handing the call to a thread and back, and the thread's Python
# contends for the GIL with the loop. Larger mails go to a thread so the loop keeps serving.
INLINE_PUT_BYTES = 256 * 1024


class Gateway:
    """The inbound pipeline bound to one process's runtime."""

    def __init__(self, runtime: Runtime, *, listeners: Sequence[Listener] = ()) -> None:
        self.rt = runtime
        # The runtime's listeners, registered at start-up; a test may pass its own.
        self.listeners = tuple(listeners) if listeners else tuple(runtime.listeners)
        self._syncer = BlobSyncer(runtime.store)
        self._own_addresses = runtime.settings.own_addresses()
        self._committer: GroupCommit[_Job, IngestResult] = GroupCommit(
            runtime.sessions, self._apply_one, before_commit=self._blobs_durable,
            finish=write_buffer,
            max_wait=runtime.settings.database.group_commit_wait_ms / 1000)

    @property
    def settings(self) -> Settings:
        """The runtime's settings as they are now (a reload may have replaced them)."""
        return self.rt.settings

    async def ingest(self, raw: bytes, via: str, *, recipients: Sequence[str] = (),
                     envelope_sender: str = "", peer: str = "",
                     strict: bool = False) -> IngestResult:
        """Store, deduplicate, parse, classify, thread and apply one raw message.

        Args:
            raw: the message bytes as received.
            via: "smtp", "imap" or "pipe", recorded on the spool row and messages.
            recipients: envelope recipients (SMTP RCPT TO), used to pick the queue.
            envelope_sender: SMTP MAIL FROM, the last resort for a mail without From.
            peer: the SMTP client's IP address; Authentication-Results on mail received
                by SMTP count only from ``[commands] trusted_relay_hosts``.
            strict: refuse input that is clearly not mail (the pipe's exit 65) instead of
                quarantining it.

        Raises:
            NotMailError: only with ``strict``, for empty or binary input.
            TransientError: storage or database trouble; the sender should retry.
        """
        if strict and not looks_like_mail(raw):
            raise NotMailError("input is not an email (empty, or binary with NUL bytes)")
        try:
            sha = await self._keep(raw)
        except OSError as exc:
            raise TransientError(f"cannot store message: {exc}") from exc
        msg, parse_error, key, message_id = self._parse(raw)
        bound = log.bind(message_id=message_id, via=via, sha256=sha[:12])
        try:
            return await self._apply(raw, via, sha, key, message_id, msg, parse_error,
                                     recipients, envelope_sender, peer, bound)
        except TransientError:
            raise
        except SQLAlchemyError as exc:
            if is_transient(exc):
                bound.warning("ingest.transient", error=type(exc).__name__)
                raise TransientError("database busy, retry later") from exc
            return await self._quarantine_after_failure(raw, via, sha, key, message_id, exc, bound)
        except Exception as exc:
            return await self._quarantine_after_failure(raw, via, sha, key, message_id, exc, bound)

    async def _keep(self, raw: bytes) -> str:
        """The raw mail's sha256, its bytes in the blob store unless its row will hold them.

        A small mail is written once, with its row, in the batch's commit: SQLite stores
        small blobs faster than a file system creates files (on the 2-core benchmark
        machine a new file and its folder took ~0.5 ms of the event loop per mail, as
        long as everything else the gateway does for a mail).
        """
        if self._in_row(raw):
            return hashlib.sha256(raw).hexdigest()
        if len(raw) <= INLINE_PUT_BYTES:
            sha = self.rt.store.put(raw, durable=False)
        else:
            sha = await asyncio.to_thread(self.rt.store.put, raw, durable=False)
        self._syncer.note_write()
        return sha

    def _in_row(self, raw: bytes) -> bool:
        return len(raw) <= self.settings.storage.raw_in_database_bytes

    async def _blobs_durable(self) -> None:
        """The raw mails and attachments written so far made durable, before the rows that
        point at them commit; the sync usually runs already (see `mailgate._blobsync`)."""
        try:
            await self._syncer.durable(self._syncer.written)
        except OSError as exc:
            raise TransientError(f"cannot sync stored messages: {exc}") from exc

    def _parse(self, raw: bytes) -> tuple[Inbound | None, str, str, str | None]:
        """(message or None, why not, dedupe key, Message-ID); the key may raise (451)."""
        s = self.settings.storage
        try:
            msg, key, message_id = parse_keyed(
                raw, max_attachment_bytes=s.max_attachment_bytes,
                max_total_attachment_bytes=s.max_attachments_per_message_bytes)
        except Exception as exc:
            key, message_id = dedupe_key(raw)
            return None, f"unparseable: {type(exc).__name__}", key, message_id
        return msg, "", key, message_id

    async def _apply(self, raw: bytes, via: str, sha: str, key: str, message_id: str | None,
                     msg: Inbound | None, parse_error: str, recipients: Sequence[str],
                     envelope_sender: str, peer: str,
                     bound: structlog.BoundLogger) -> IngestResult:
        atts = await store_attachments(self.rt.store, msg.attachments) if msg else []
        if atts:
            self._syncer.note_write()
        # Mail handed over by the MTA (pipe, LMTP) or read from a mailbox came through the
        # relay that wrote its Authentication-Results; the SMTP receiver may face anyone.
        trusted = via != "smtp" or self.settings.commands.is_trusted_relay(peer)
        job = _Job(raw, via, sha, key, message_id, tuple(recipients), envelope_sender,
                   trusted, bound, msg, parse_error, atts, self._in_row(raw))
        result = await self._committer.submit(job)
        bound.info("ingest." + ("applied" if result.ticket else result.disposition),
                   disposition=result.disposition, ticket=result.ticket, reason=result.reason)
        return result

    async def _apply_one(self, session, job: _Job) -> IngestResult:  # type: ignore[no-untyped-def]
        """One message inside the shared transaction (its own SAVEPOINT)."""
        open_buffer(session)  # rows nothing reads back wait for the batch's end
        try:
            return await self._apply_buffered(session, job)
        except BaseException:
            # Rolled back with its SAVEPOINT (or the whole batch): none of its rows may
            # be written by the next unit's end of batch.
            discard_buffer(session)
            raise

    async def _apply_buffered(self, session, job: _Job) -> IngestResult:  # type: ignore[no-untyped-def]
        s, now = self.settings, self.rt.clock()
        if session.new or session.dirty or session.deleted:
            await session.flush()  # Core reads below must see what earlier units left pending
        spool_id = await _spool.claim(session, job.key, job.message_id, job.sha, len(job.raw),
                                      job.via, now, job.raw if job.in_row else None)
        if spool_id is None:
            await write_buffer(session)  # the first copy may be earlier in this batch
            existing = (await session.execute(
                select(InboundSpool).where(InboundSpool.dedupe_key == job.key))).scalar_one()
            return IngestResult("duplicate", existing.id, None,
                                f"already received as spool #{existing.id} ({existing.status})")
        msg = job.msg
        if msg is None:
            await _spool.finish(session, spool_id, "quarantined", job.parse_error, None, now)
            return IngestResult("quarantined", spool_id, None, job.parse_error)
        verdict = classify(msg, instance_id=s.instance.id, ignore_lists=s.classify.ignore_lists,
                           own_addresses=self._own_addresses, mime=_bounce_mime(msg, job.raw))
        if not verdict.makes_ticket:
            await self._record_ignored(session, msg, verdict, spool_id, now)
            return IngestResult("ignored", spool_id, None, f"{verdict.kind}: {verdict.reason}")
        if msg.sender_text:  # From named no one mailbox: say what it said
            job.bound.info("ingest.sender_fallback", original=msg.sender_text[:200],
                           sender=msg.sender.email if msg.sender else "")
        msg = await self._ensure_sender(session, msg, job.envelope_sender, job.bound)
        result, ticket_id = await _Mail(self, session, msg, verdict, job, spool_id, now).apply()
        await Tx(session).later(_spool.FINISH, _spool.finish_values(
            spool_id, result.disposition, result.reason, ticket_id, now))
        return result

    async def _ensure_sender(self, session, msg: Inbound, envelope_sender: str,  # type: ignore[no-untyped-def]
                             bound: structlog.BoundLogger) -> Inbound:
        """A requester for every mail: From, else Sender, Reply-To, Return-Path, MAIL FROM.

        Mail with no usable address at all still becomes a ticket (agents can read it),
        under a contact at the reserved ``.invalid`` domain that is marked undeliverable,
        so nothing is ever sent to it.
        """
        if msg.sender is not None and msg.sender.email:
            return msg
        name = msg.sender.name if msg.sender is not None else ""
        candidates = [msg.headers.get("sender", ""), *[a.email for a in msg.reply_to],
                      msg.headers.get("return-path", ""), envelope_sender]
        for value in candidates:
            email = parseaddr(value)[1].strip().lower()
            if "@" in email and "." in email.rpartition("@")[2] and len(email) <= 254:
                bound.info("ingest.sender_fallback", source="header or envelope")
                return dataclasses.replace(msg, sender=Address(email=email, name=name))
        contact = await get_or_create_contact(session, UNKNOWN_SENDER, "Unknown sender")
        contact.is_undeliverable = True
        contact.undeliverable_reason = "placeholder for mail without any sender address"
        await session.flush()  # the Core reads that follow see it
        bound.warning("ingest.no_sender")
        return dataclasses.replace(msg, sender=Address(email=UNKNOWN_SENDER, name=""))

    async def _record_ignored(self, session, msg: Inbound, verdict: Classification,  # type: ignore[no-untyped-def]
                              spool_id: int, now) -> None:
        for addr in verdict.bounced_recipients:
            await session.execute(
                update(Contact).where(Contact.email == addr.lower()).values(
                    is_undeliverable=True, undeliverable_reason=verdict.reason[:500]))
        await _spool.finish(session, spool_id, "ignored", f"{verdict.kind}: {verdict.reason}",
                            None, now)

    async def _quarantine_after_failure(self, raw: bytes, via: str, sha: str, key: str,
                                        message_id: str | None, exc: Exception,
                                        bound: structlog.BoundLogger) -> IngestResult:
        reason = f"internal error: {type(exc).__name__}"
        bound.error("ingest.failed", error=type(exc).__name__, exc_info=exc)
        try:
            await self._blobs_durable()
            async with self.rt.sessions() as session, session.begin():
                now = self.rt.clock()
                spool_id = await _spool.claim(session, key, message_id, sha, len(raw), via, now,
                                              raw if self._in_row(raw) else None)
                if spool_id is None:
                    existing = (await session.execute(
                        select(InboundSpool.id).where(InboundSpool.dedupe_key == key))).scalar_one()
                    return IngestResult("duplicate", existing, None, "already received")
                await _spool.finish(session, spool_id, "quarantined", reason, None, now)
        except Exception as exc2:
            raise TransientError("cannot record quarantined message") from exc2
        bound.warning("ingest.quarantined", reason=reason, spool=spool_id)
        return IngestResult("quarantined", spool_id, None, reason)

    async def retry(self, spool_id: int) -> IngestResult:
        """Run a quarantined spool entry through the pipeline again.

        The quarantined row stays until the replay has committed: its dedupe key is set
        aside first (so the replay is not taken for a duplicate), then it is marked
        ``replayed`` pointing at the new entry. A crash in between leaves it quarantined.
        """
        async with self.rt.sessions() as session, session.begin():
            row = await session.get(InboundSpool, spool_id)
            if row is None:
                raise NotFoundError(f"no spool entry {spool_id}")
            if row.status != "quarantined":
                return IngestResult("duplicate", row.id, None, f"not quarantined: {row.status}")
            if not row.dedupe_key.startswith("retry:"):
                row.dedupe_key = f"retry:{row.id}:{row.dedupe_key}"[:128]
            raw, via = await _spool.raw_message(session, self.rt.store, spool_id), row.via
        result = await self.ingest(raw or b"", via)
        async with self.rt.sessions() as session, session.begin():
            row = await session.get(InboundSpool, spool_id)
            if row is not None and result.spool_id != spool_id:
                row.status = "replayed"
                row.reason = f"replayed as spool #{result.spool_id}: {result.disposition}"
        return result


_AGENTS = select(Agent.id, Agent.email, Agent.is_active)
_AGENTS_KEY = "ingest.agents"


class _Mail:
    """Identify, thread and authorise one mail, then hand it to the ticket service.

    The one decision tree of the gateway, computed once per mail on Core rows: a
    contact's mail (most mail) never loads an ORM object; an agent's mail loads the
    objects its commands work on.
    """

    def __init__(self, gateway: Gateway, session: AsyncSession, msg: Inbound,
                 verdict: Classification, job: _Job, spool_id: int, now: datetime) -> None:
        self.gw, self.rt, self.s = gateway, gateway.rt, gateway.settings
        self.session, self.msg, self.verdict, self.job = session, msg, verdict, job
        self.spool_id, self.now = spool_id, now
        self.tx = Tx(session)
        self.service = TicketService(session, self.s, clock=self.rt.clock,
                                     listeners=gateway.listeners)

    async def apply(self) -> tuple[IngestResult, int | None]:
        msg, s, session = self.msg, self.s, self.session
        assert msg.sender is not None
        conn = await self.tx.connection()
        sender = await ensure_contact(conn, msg.sender.email, msg.sender.name,
                                      freemail=s.tickets.freemail_domains)
        claimed = await self._agent(sender.email)
        agent, auth = None, AuthResult(True, "")
        if claimed is not None:
            # A From header is free text: only an authenticated agent is treated as one.
            # Anyone else writing from an agent's address is an ordinary contact, and the
            # agent is told.
            auth = await authenticate_agent_mail(
                session, self.rt, msg, claimed, self.job.recipients, self.spool_id,
                via_trusted_relay=self.job.via_trusted_relay)
            if auth.ok:
                agent = claimed
            else:
                log.info("ingest.agent_unauthenticated", agent=claimed.id, reason=auth.reason)
        result, ticket_id = await self._decide(sender, agent, auth)
        if claimed is not None and agent is None and ticket_id is not None:
            await refuse_unauthenticated(self.rt, session, claimed, msg, auth, ticket_id,
                                         disposition=result.disposition,
                                         reference=result.ticket)
        return result, ticket_id

    async def _agent(self, email: str) -> Agent | None:
        """The active agent whose address sent the mail (agents read once per batch)."""
        agents = self.tx.cache.get(_AGENTS_KEY)
        if agents is None:
            agents = self.tx.cache[_AGENTS_KEY] = {
                row.email: row for row in (await run(await self.tx.connection(),
                                                     _AGENTS)).all()}
        row = agents.get(email)
        if row is None or not row.is_active:
            return None
        return await self.session.get(Agent, row.id)

    async def _decide(self, sender: CoreRow, agent: Agent | None,
                      auth: AuthResult) -> tuple[IngestResult, int | None]:
        msg, s, service = self.msg, self.s, self.service
        recipients = self.job.recipients
        route: Route = resolve_queue(s, recipients or header_recipients(msg), msg)
        await self.tx.flush_for(message_ids=[*msg.in_reply_to, *msg.references])
        bound = auth.ticket if agent is not None and auth.method == "reply_address" else None
        decision = await lookup_thread(self.session, self.rt, msg, sender, agent, recipients,
                                       agent_address_ticket=bound)
        ticket = None if decision.ticket is None else await self._ticket(decision.ticket)
        actor = Actor("agent", agent.email, agent.id) if agent else Actor(
            "contact", sender.email, sender.id)
        unverified = not auth.ok
        if ticket is None:
            questions = queries_of(self.rt, msg) if agent is not None else None
            if agent is not None and questions is not None:
                try:
                    asked = await answer_queries(self.rt, self.session, agent, msg, questions)
                except DomainError as exc:
                    asked, why = [], str(exc)
                else:
                    why = "answered " + "; ".join(asked)
                return IngestResult("ignored", self.spool_id, None,
                                    f"agent {agent.email}'s question: {why}"), None
            if agent is not None and (lacking := missing(s.permissions, agent.role,
                                                         NEW_TICKET)):
                # kept, not lost: `helpdesk spool retry` once the role allows it
                return IngestResult(
                    "quarantined", self.spool_id, None,
                    f"agent {agent.email} (role {agent.role}) may not open tickets: the "
                    f"role lacks {', '.join(lacking)}"), None
            return await self._open(sender, actor, route, decision.reason)
        ref = service.reference(ticket)
        if agent is None and (decision.internal or unverified):
            # Staff talk stays staff talk: an answer to a staff-only notice, or mail from an
            # agent's address that failed authentication, is never shown to the requester.
            text = msg.visible_text
            if unverified:
                text = (f"Unverified mail from {msg.sender.email if msg.sender else ''}: it "
                        f"could not be authenticated ({auth.reason}), so no command in it "
                        f"ran and it is kept as an internal note.\n\n{text}")
            await self._reply(ticket, sender, actor, "internal", text)
            reason = decision.reason + ("; unverified agent mail kept as an internal note"
                                        if unverified else "; filed as an internal note")
            return IngestResult("reply", self.spool_id, ref, reason), ticket.id
        if agent is None and service.status_class(ticket.status) == "closed":
            if s.tickets.reply_to_closed != "reopen":
                return await self._open(sender, actor, route,
                                        f"reply to closed {ref}", followup_of=ticket)
            await service.set_status(await service.get(ticket.number),
                                     s.tickets.statuses[0].name, actor,
                                     reason="reply to a closed ticket")
        if agent is not None:  # authenticated: commands, then reply or note, in this transaction
            outcome = await AgentMail(self.rt, service, await service.get(ticket.number), agent,
                                      msg).apply(via=self.job.via, spool_id=self.spool_id,
                                                 attachments=self.job.attachments,
                                                 internal=decision.internal)
            reason = decision.reason + (
                f"; agent commands: {len(outcome.applied)} applied, {len(outcome.failed)} failed"
                if outcome.applied or outcome.failed else "")
            return IngestResult("reply", self.spool_id, ref, reason), ticket.id
        await self._reply(ticket, sender, actor, "public", msg.visible_text)
        return IngestResult("reply", self.spool_id, ref, decision.reason), ticket.id

    async def _ticket(self, number: int) -> TicketFacts | None:
        """The ticket a mail threads onto, following merges to where its messages are."""
        conn = await self.tx.connection()
        row = (await run(conn, TICKET_BY_NUMBER, {"number": number})).one_or_none()
        seen = set()
        while row is not None and row.merged_into_id is not None and row.id not in seen:
            seen.add(row.id)
            target = (await run(conn, TICKET_BY_ID, {"ticket": row.merged_into_id})
                      ).one_or_none()
            if target is None:
                break
            row = target
        if row is None or row.deleted_at is not None:  # a ticket in the trash takes no mail
            return None
        return TicketFacts.of(row)

    async def _reply(self, ticket: TicketFacts, sender: CoreRow, actor: Actor, kind: str,
                     text: str) -> None:
        msg = self.msg
        await self.service.reply(
            ticket, kind=kind, text=text, actor=actor, author_contact_id=sender.id,
            via=self.job.via, subject=msg.subject, full_text=msg.text, html=msg.html,
            message_id=msg.message_id, spool_id=self.spool_id,
            attachments=self.job.attachments)

    async def _open(self, sender: CoreRow, actor: Actor, route: Route, reason: str, *,
                    followup_of: TicketFacts | None = None) -> tuple[IngestResult, int]:
        msg, s, service = self.msg, self.s, self.service
        conn = await self.tx.connection()
        watchers = [await ensure_contact(conn, addr.email, addr.name,
                                         freemail=s.tickets.freemail_domains)
                    for addr in cc_watchers(s.smtp, msg, sender.email)]
        created = await service.create(
            requester=sender, subject=msg.subject, text=msg.text or msg.visible_text,
            actor=actor, channel="email", queue=route.queue, category=route.category,
            priority=route.priority, type=route.type, full_text=msg.text, html=msg.html,
            message_id=msg.message_id, spool_id=self.spool_id,
            attachments=self.job.attachments, watchers=watchers, followup_of=followup_of,
            reason=reason, acknowledge="" if self.verdict.suppress_autoresponse
            else route.autoresponder_template)
        ticket = created.ticket
        if route.tags or route.assignee:
            orm = await service.get(ticket.number)
            if route.tags:
                await service.add_tags(orm, route.tags, audit.SYSTEM)
            if route.assignee:
                assignee = await find_agent(self.session, route.assignee)
                if assignee is not None:
                    await service.assign(orm, assignee, audit.SYSTEM)
        return (IngestResult("ticket", self.spool_id, service.reference(ticket),
                             reason), ticket.id)
