"""Send one outbox row: the Dramatiq actor and the delivery it runs (claim, compose, send, mark).

The actor takes a row id only; the database row is the truth, the broker message a hint.
A row is sent when :func:`~helpdesk.outbox_ops.claim_for_sending` moves it from
``queued`` to ``sending``; a message for a row that is not ``queued`` (sent already, in
another worker's hands, failed) is dropped. Dramatiq's own retries are off for the actor:
retries are rows put back to ``pending`` with a later ``next_attempt_at`` (exponential
backoff), found again by the relay.

Outcomes of one attempt:

- accepted (2xx): the row is ``sent``.
- 4xx, connection refused or lost, timeout: ``attempts + 1``, back to ``pending`` after
  ``retry_base * 2**(attempts-1)`` (at most an hour); after ``[outbound] max_attempts``
  the row is ``failed`` and the admin told, as below.
- 5xx, or a row that cannot be composed (broken template, an internal note addressed to a
  non-agent): ``failed`` with the server's answer (or the reason); one ``admin_notice`` row
  to ``[instance] admin_email`` is written in the same transaction. A failed admin notice
  tells nobody, so failures never loop.

At-least-once, and where a mail can go out twice: the row is marked ``sent`` in its own
transaction right after the smarthost answered 250 to the end of DATA. A worker that dies
(SIGKILL, power loss) or loses the database after that 250 and before that commit leaves
the row in ``sending``; when its lease runs out (``[outbound] lease_seconds``; by default
the larger of 120 s and 6 x ``timeout_seconds``, i.e. 180 s) the relay claims it again and
it is sent a second time, with the same Message-ID, so mail clients show it once. The
window is one SMTP reply plus one small commit per mail in flight (at most ``threads``
mails per worker process). Outside that window a mail is sent twice only if one send
outlasts the whole lease (the lease is sized for that not to happen): a row is otherwise
only sent by the worker that moved it to ``sending``.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import outbox, outbox_ops
from helpdesk.configcheck import admin_notice_note
from helpdesk.models import Agent, Contact, Message, OutboxRow, Ticket
from helpdesk.outbox import HTTP_KINDS, TASK
from helpdesk.refs import format_ticket_ref
from helpdesk.runtime import Runtime
from helpdesk.tasks import record_task, task_url
from helpdesk.views import link_line, ticket_links
from responders import broker as broker_mod
from responders import webhook
from responders.broker import QUEUE, RuntimeBridge, WorkerOptions
from responders.compose import (
    AttachmentData,
    ComposeError,
    Composer,
    MessageView,
    OutgoingRow,
    ReadModel,
    TicketView,
)
from responders.send import DeliveryError, deliver
from responders.smarthost import Smarthost

log = structlog.get_logger("responders.actors")
ADMIN_NOTICE = "admin_notice"


@dramatiq.actor(queue_name=QUEUE, max_retries=0, broker=broker_mod.current())
def send_outbox_row(row_id: int) -> None:
    """Send outbox row ``row_id`` unless it is no longer ``queued``."""
    bridge = RuntimeBridge.of(send_outbox_row.broker)
    bridge.processing(row_id)
    bridge.run(deliver_row(bridge.rt, row_id, bridge.options, bridge.composer,
                           bridge.smarthost))


ACTORS = (send_outbox_row,)


async def deliver_row(rt: Runtime, row_id: int, options: WorkerOptions,
                      composer: Composer, smarthost: Smarthost | None = None) -> str:
    """One delivery attempt of a row; returns "skipped", "sent", "retry" or "failed".

    ``smarthost``: the process's reachability tracker; with it, a connection failure is
    logged once for all rows (as the smarthost being unreachable), not once per row.
    """
    async with rt.sessions() as session, session.begin():
        if not await outbox_ops.claim_for_sending(session, row_id, now=rt.clock(),
                                                  lease=options.lease):
            return "skipped"
        row = await session.get(OutboxRow, row_id)
        assert row is not None
        outgoing = OutgoingRow.from_row(row)
        read = await load_read_model(rt, session, row)
    try:
        if outgoing.kind in HTTP_KINDS:
            response = await webhook.post(rt.settings, outgoing)
            if outgoing.kind == TASK:
                await _task_created(rt, row_id, outgoing, response)
        else:
            message = composer.compose(outgoing, read, now=rt.clock())
            await deliver(message, rt.settings.outbound, recipients=outgoing.recipients)
    except webhook.WebhookError as exc:
        return await _finish(rt, row_id, error=exc.reply, permanent=exc.permanent,
                             options=options)
    except ComposeError as exc:
        return await _finish(rt, row_id, error=f"not composed: {exc}", permanent=True,
                             options=options)
    except DeliveryError as exc:
        unreachable = isinstance(exc.__cause__, OSError | TimeoutError)
        if smarthost is not None and unreachable:
            smarthost.unreachable(exc.reply)
        elif smarthost is not None:
            smarthost.answered()
        return await _finish(rt, row_id, error=exc.reply, permanent=exc.is_permanent,
                             options=options, quiet=unreachable and smarthost is not None)
    if smarthost is not None and outgoing.kind not in HTTP_KINDS:
        smarthost.answered()
    async with rt.sessions() as session, session.begin():
        row = await session.get(OutboxRow, row_id)
        assert row is not None
        await outbox_ops.mark_sent(session, row, now=rt.clock())
        row.last_error = admin_notice_note(rt.settings, outgoing.recipients)  # outbox list
    log.info("outbox.sent", row=row_id, kind=outgoing.kind, message_id=outgoing.message_id)
    return "sent"


async def _task_created(rt: Runtime, row_id: int, outgoing: OutgoingRow,
                        response: Any) -> None:
    """Record the task the endpoint made as its ticket's ``task`` link.

    Raises:
        WebhookError: the answer names no task URL (permanent: asking again would make a
            second task).
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    url = task_url(body, response.headers)
    if url is None:
        raise webhook.WebhookError(
            f"HTTP {response.status_code} without a task URL (JSON url or Location)",
            permanent=True)
    row_ticket = outgoing.ticket_id
    if row_ticket is not None:
        await record_task(rt, row_ticket, url, str(outgoing.context.get("title", "")))
    log.info("task.created", row=row_id, url=url)


async def _finish(rt: Runtime, row_id: int, *, error: str, permanent: bool,
                  options: WorkerOptions, quiet: bool = False) -> str:
    """Record a failed attempt; tell the admin when the row has failed for good.

    ``quiet``: a retry whose cause was already logged once (the smarthost is unreachable)
    is logged at debug; the row keeps the error for ``helpdesk outbox list``.
    """
    async with rt.sessions() as session, session.begin():
        row = await session.get(OutboxRow, row_id)
        assert row is not None
        if permanent:
            await outbox_ops.mark_failed(session, row, error=error)
            again = False
        else:
            again = await outbox_ops.mark_retry(
                session, row, now=rt.clock(), error=error,
                max_attempts=rt.settings.outbound.max_attempts, base=options.retry_base)
        if not again:
            await _notify_admin(rt, session, row)
    event = "outbox.retry" if again else "outbox.failed"
    (log.debug if again and quiet else log.warning)(
        event, row=row_id, kind=row.kind, attempts=row.attempts, error=error)
    return "retry" if again else "failed"


async def _notify_admin(rt: Runtime, session: AsyncSession, row: OutboxRow) -> None:
    """One notice to the admin about a failed row, except about an admin notice."""
    admin = rt.settings.instance.admin_email
    if row.kind == ADMIN_NOTICE or not admin:
        return
    ticket = await session.get(Ticket, row.ticket_id) if row.ticket_id else None
    await outbox.enqueue(
        session, kind=ADMIN_NOTICE, template="admin_delivery_failed", to=[admin],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=rt.clock(), ticket=ticket,
        context={"row_id": row.id, "row_kind": row.kind, "recipients": list(row.recipients),
                 "message_id": row.message_id, "error": row.last_error,
                 "subject": ticket.subject if ticket else ""},
    )


async def load_read_model(rt: Runtime, session: AsyncSession, row: OutboxRow) -> ReadModel:
    """Load what :meth:`Composer.compose` needs for ``row`` (ticket, message, recipients).

    An address that is an agent's is not a contact for links, except the ticket's own
    requester: an agent who opened a ticket from their address is on the requester side of
    it and gets its acknowledgement, replies and rating links like anyone else.
    """
    recipients = [r.lower() for r in row.recipients]
    ticket_view = None
    requester_id: int | None = None
    if row.ticket_id is not None:
        ticket = await session.get(Ticket, row.ticket_id)
        if ticket is not None:
            links: tuple[str, ...] = ()
            if row.kind not in outbox.REQUESTER_KINDS:  # staff mail shows the ticket's links
                links = tuple(link_line(x) for x in await ticket_links(
                    session, rt.settings, ticket.id))
            ticket_view = _ticket_view(rt, ticket, links)
            requester_id = ticket.requester_id
    message_view = None
    if row.kind == outbox.REPORT:  # the rendered report, from the blob store
        context = row.context or {}
        message_view = MessageView(
            kind="report", text=rt.store.get(str(context["html"])).decode(),
            author_name="", author_email="",
            attachments=(AttachmentData("report.pdf", "application/pdf",
                                        rt.store.get(str(context["pdf"]))),))
    if row.about_message_id is not None:
        message = await session.get(Message, row.about_message_id)
        if message is not None:
            message_view = await _message_view(rt, message, forward=row.kind == "reply")
    contacts = {email: contact_id for email, contact_id in await session.execute(
        select(Contact.email, Contact.id).where(Contact.email.in_(recipients)))}
    agents = frozenset((await session.execute(
        select(Agent.email).where(Agent.email.in_(recipients)))).scalars())
    return ReadModel(ticket=ticket_view, message=message_view,
                     contacts={k: v for k, v in contacts.items()
                               if k not in agents or v == requester_id},
                     agents=agents)


def _ticket_view(rt: Runtime, ticket: Ticket, links: tuple[str, ...] = ()) -> TicketView:
    t = rt.settings.tickets
    return TicketView(type=ticket.type, category=ticket.category, links=links,
        id=ticket.id, number=ticket.number, reference=format_ticket_ref(ticket.number, t.prefix,
                                                                    t.digits),
        subject=ticket.subject, status=ticket.status, priority=ticket.priority,
        queue_address=ticket.queue or rt.settings.outbound.sender,
        requester_email=ticket.requester.email, requester_name=ticket.requester.name,
        link_secret=ticket.link_secret)


async def _message_view(rt: Runtime, message: Message, *, forward: bool) -> MessageView:
    author: Any = message.author_agent or message.author_contact
    attachments: tuple[AttachmentData, ...] = ()
    if forward:
        attachments = tuple(
            AttachmentData(a.filename, a.content_type, rt.store.get(a.sha256))
            for a in message.attachments)
    return MessageView(kind=message.kind, text=message.text,
                       author_name=getattr(author, "name", "") or "",
                       author_email=getattr(author, "email", "") or "",
                       attachments=attachments)
