"""Outbox rows: every email we send, written in the transaction of the change it announces.

The Message-ID is minted here, at write time, so a row that is retried after a crash goes
out with the same Message-ID and the recipient's client shows one message, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.direct import connection, run
from helpdesk.mailtokens import mailbox_of, make_message_id
from helpdesk.models import MessageRef, OutboxRow, Ticket

REPORT = "report"
"""The scheduled report (`helpdesk.report_schedule`): HTML with charts, the PDF attached."""
INTERNAL_KINDS = frozenset({"sla_warning", "sla_breach", "admin_notice", "staff_notice",
                            REPORT})
"""Staff-only notices: an internal Message-ID and reply address, so an answer to one is
filed as an internal note and never reaches the requester."""

WEBHOOK = "webhook"
"""The kind of a row that is an HTTP POST (``context``: url, automation, payload), not a mail."""

TASK = "task"
"""A POST of a ticket to the task endpoint (``[tasks]``); its answer's URL becomes the
ticket's ``task`` link."""
HTTP_KINDS = frozenset({WEBHOOK, TASK})
"""Rows the workers POST instead of mailing."""

REQUESTER_KINDS = frozenset({"ack", "reply", "resolved", "update"})
"""Mail to the requester's side; only these (and the requester's own mail) make up the
public thread whose Message-IDs requesters see in ``References``."""


def row_values(
    *,
    kind: str,
    template: str,
    to: Sequence[str],
    instance_id: str,
    secret: str,
    domain: str,
    at: datetime,
    ticket_id: int | None = None,
    ticket_number: int = 0,
    about_message_id: int | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one outbox row, its Message-ID minted now (see the module docstring)."""
    recipients = [a.strip().lower() for a in to if a and a.strip()]
    if not recipients:
        raise ValueError("an outbox row needs a recipient")
    return {
        "kind": kind, "template": template, "ticket_id": ticket_id,
        "about_message_id": about_message_id, "to_addr": recipients[0],
        "to_mailbox": mailbox_of(recipients[0]), "to_domain": recipients[0].rpartition("@")[2],
        "recipients": recipients,
        "message_id": make_message_id(ticket_number, instance_id=instance_id, secret=secret,
                                      domain=domain, internal=kind in INTERNAL_KINDS),
        "in_reply_to": in_reply_to, "references": list(references), "context": context or {},
        "status": "pending", "attempts": 0, "created_at": at, "next_attempt_at": at,
    }


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    template: str,
    to: Sequence[str],
    instance_id: str,
    secret: str,
    domain: str,
    at: datetime,
    ticket: Ticket | None = None,
    about_message_id: int | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    context: dict[str, Any] | None = None,
) -> OutboxRow:
    """Add one outgoing mail to the caller's transaction and record its Message-ID."""
    return await add(session, row_values(
        kind=kind, template=template, to=to, instance_id=instance_id, secret=secret,
        domain=domain, at=at, ticket_id=ticket.id if ticket else None,
        ticket_number=ticket.number if ticket is not None else 0,
        about_message_id=about_message_id, in_reply_to=in_reply_to, references=references,
        context=context))


async def add(session: AsyncSession, values: dict[str, Any]) -> OutboxRow:
    """Add a row built by `row_values`; a ticket's rows also become threading references."""
    row = OutboxRow(**values)
    session.add(row)
    ref = thread_ref(values)
    if ref is not None:
        session.add(MessageRef(**ref))
    await session.flush()
    return row


def thread_ref(values: dict[str, Any]) -> dict[str, Any] | None:
    """The message reference of an outbox row about a ticket: replies to it thread there."""
    if values["ticket_id"] is None:
        return None
    return {"message_id": values["message_id"], "ticket_id": values["ticket_id"],
            "direction": "out"}


async def count_recent(session: AsyncSession, *, kind: str, to: str, since: datetime) -> int:
    """How many rows of ``kind`` went to ``to`` since ``since`` (auto-responder rate limit)."""
    return int((await run(await connection(session), _COUNT_RECENT, {
        "to": to.lower(), "kind": kind, "since": since})).scalar_one())


_COUNT_RECENT = select(func.count()).select_from(OutboxRow).where(
    OutboxRow.to_addr == bindparam("to"), OutboxRow.kind == bindparam("kind"),
    OutboxRow.created_at >= bindparam("since"))


async def count_recent_acks(session: AsyncSession, *, to: str,
                            since: datetime) -> tuple[int, int]:
    """Acknowledgements since ``since`` to ``to``'s mailbox, and to its whole domain."""
    row = (await run(await connection(session), _COUNT_ACKS, {
        "mailbox": mailbox_of(to), "domain": to.strip().lower().rpartition("@")[2],
        "kind": "ack", "since": since})).one()
    return int(row.mailbox), int(row.domain)


def _count_to(column: Any) -> Any:
    return select(func.count()).select_from(OutboxRow).where(
        column == bindparam(column.key.removeprefix("to_")),
        OutboxRow.kind == bindparam("kind"),
        OutboxRow.created_at >= bindparam("since")).scalar_subquery()


# one statement, each count a range of its (mailbox or domain, kind, created_at) index
_COUNT_ACKS = select(_count_to(OutboxRow.to_mailbox).label("mailbox"),
                     _count_to(OutboxRow.to_domain).label("domain"))


HOUR = timedelta(hours=1)
