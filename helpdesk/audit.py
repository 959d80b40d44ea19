"""Audit events: who changed what on a ticket, when, from what to what, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.models import AuditEvent

ActorKind = Literal["system", "agent", "contact", "cli"]


@dataclass(frozen=True)
class Actor:
    """Who made a change; rendered as ``kind:label`` in the audit log."""

    kind: ActorKind
    label: str
    id: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.label}"


SYSTEM = Actor("system", "helpdesk")


def values(
    *,
    ticket_id: int | None,
    actor: Actor,
    action: str,
    at: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The columns of one audit event: `record` adds it as an object, `Tx.add` inserts it."""
    return {"ticket_id": ticket_id, "actor": str(actor), "action": action, "before": before,
            "after": after, "reason": reason, "created_at": at}


def record(
    session: AsyncSession,
    *,
    ticket_id: int | None,
    actor: Actor,
    action: str,
    at: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditEvent:
    """Add an audit event to the caller's transaction (it commits with the change)."""
    event = AuditEvent(**values(ticket_id=ticket_id, actor=actor, action=action, at=at,
                                before=before, after=after, reason=reason))
    session.add(event)
    return event
