"""Domain events: what just happened to a ticket, as typed values, in the change's transaction.

Why events: assignment, automation, reports and digests all need to know every change,
from every way in (SMTP, the pipe, IMAP, agent commands, the portal, the CLI, the SLA
daemon). The ticket service is the one writer; each change it makes becomes one event,
and everything downstream of a change (the audit row, the notifications, whatever a
later rule wants) is a function of that event, registered once at start-up.

An event holds plain values (`TicketFacts`, `MessageFacts`), never ORM objects, so a
listener cannot reach into a session it was not given, and events from the gateway's
Core rows and from ORM objects are the same. A listener gets the event and a `Tx`, the
handle on the transaction the change is in: what it writes commits or rolls back with
the change.

The audit row of each event is `audit_values(event)`: one mapping from event to history,
so the audit log cannot drift from what listeners were told.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from helpdesk import audit
from helpdesk.audit import Actor
from helpdesk.history import Change

if TYPE_CHECKING:
    from helpdesk.tx import Tx


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """A ticket as it stands after the change: what rules and notifications look at."""

    id: int
    number: int
    queue: str
    status: str
    priority: str
    category: str
    requester_id: int
    assignee_id: int | None
    subject: str
    channel: str = "email"
    type: str = "Other"

    @classmethod
    def of(cls, ticket: Any) -> TicketFacts:
        """From an ORM ticket or a Core row with the same column names."""
        return cls(ticket.id, ticket.number, ticket.queue, ticket.status, ticket.priority,
                   ticket.category, ticket.requester_id, ticket.assignee_id, ticket.subject,
                   ticket.channel, ticket.type)


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """A message just added: who wrote it, of what kind, with which Message-ID."""

    id: int
    kind: str  # public | internal | system
    author_contact_id: int | None
    author_agent_id: int | None
    message_id: str | None
    attachments: int = 0

    @property
    def by_agent(self) -> bool:
        return self.author_agent_id is not None


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """Something that happened to one ticket, by whom, when."""

    kind: ClassVar[str] = ""
    ticket: TicketFacts
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class TicketCreated(TicketEvent):
    """A new ticket with its first message (which has no `MessageAdded` of its own)."""

    kind: ClassVar[str] = "ticket_created"
    message: MessageFacts | None = None
    snapshot: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    requester_email: str = ""
    organization_id: int | None = None
    body: str = ""  # the first message's text, for rules that read it
    # The template of the acknowledgement the requester is due ("" for none: the mail was
    # automatic, or the ticket was not opened by the requester's mail), and whether their
    # address bounced; `helpdesk.notify.Acknowledger` queues it within the hourly limits.
    acknowledge: str = ""
    requester_undeliverable: bool = False


@dataclass(frozen=True, slots=True)
class MessageAdded(TicketEvent):
    """A public reply, internal note or system message, by requester, agent or system."""

    kind: ClassVar[str] = "message_added"
    message: MessageFacts | None = None


@dataclass(frozen=True, slots=True)
class FieldChanged(TicketEvent):
    """A ticket field changed from ``before`` to ``after`` (subject, channel, due date)."""

    kind: ClassVar[str] = "field_changed"
    name: str = ""
    before: Any = None
    after: Any = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StatusChanged(FieldChanged):
    kind: ClassVar[str] = "status_changed"


@dataclass(frozen=True, slots=True)
class PriorityChanged(FieldChanged):
    kind: ClassVar[str] = "priority_changed"


@dataclass(frozen=True, slots=True)
class CategoryChanged(FieldChanged):
    kind: ClassVar[str] = "category_changed"


@dataclass(frozen=True, slots=True)
class TypeChanged(FieldChanged):
    kind: ClassVar[str] = "type_changed"


@dataclass(frozen=True, slots=True)
class Assigned(FieldChanged):
    """``before``/``after`` are the agents' addresses (None: unassigned)."""

    kind: ClassVar[str] = "assigned"


@dataclass(frozen=True, slots=True)
class TagsChanged(FieldChanged):
    """``before``/``after`` are the sorted tag lists."""

    kind: ClassVar[str] = "tags_changed"


@dataclass(frozen=True, slots=True)
class Resolved(TicketEvent):
    """The status moved into the resolved class (after its `StatusChanged`)."""

    kind: ClassVar[str] = "resolved"


@dataclass(frozen=True, slots=True)
class Closed(TicketEvent):
    kind: ClassVar[str] = "closed"


@dataclass(frozen=True, slots=True)
class Reopened(TicketEvent):
    """The status moved from resolved or closed back to an active one."""

    kind: ClassVar[str] = "reopened"


@dataclass(frozen=True, slots=True)
class WatcherAdded(TicketEvent):
    kind: ClassVar[str] = "watcher_added"
    email: str = ""
    source: str = "added"  # added (by a person) | cc (from the first mail)


@dataclass(frozen=True, slots=True)
class WatcherRemoved(TicketEvent):
    kind: ClassVar[str] = "watcher_removed"
    email: str = ""


@dataclass(frozen=True, slots=True)
class Merged(TicketEvent):
    """``ticket`` was merged into ``into`` (its messages now live there)."""

    kind: ClassVar[str] = "merged"
    into: TicketFacts | None = None
    source_ref: str = ""
    into_ref: str = ""
    moved_messages: int = 0


@dataclass(frozen=True, slots=True)
class Linked(TicketEvent):
    """A link added from this ticket: to ``other`` (a ticket reference) or to ``url``."""

    kind: ClassVar[str] = "linked"
    link: str = ""  # related | parent | child | followup | task | issue | incident
    other: str = ""
    url: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class Unlinked(Linked):
    kind: ClassVar[str] = "unlinked"


@dataclass(frozen=True, slots=True)
class Deleted(TicketEvent):
    """Moved to the trash: out of every list, search and thread until purged."""

    kind: ClassVar[str] = "deleted"


@dataclass(frozen=True, slots=True)
class Restored(TicketEvent):
    kind: ClassVar[str] = "restored"


@dataclass(frozen=True, slots=True)
class TimeLogged(TicketEvent):
    kind: ClassVar[str] = "time_logged"
    minutes: int = 0
    note: str = ""
    entry: int = 0


@dataclass(frozen=True, slots=True)
class CsatRated(TicketEvent):
    kind: ClassVar[str] = "csat_rated"
    score: int = 0
    comment: str = ""
    previous: Mapping[str, Any] | None = None  # the rating it replaced, if any


@dataclass(frozen=True, slots=True)
class LinksRevoked(TicketEvent):
    """The ticket's link secret was replaced: every link sent so far stops working."""

    kind: ClassVar[str] = "links_revoked"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SlaAlert(TicketEvent):
    """An SLA clock passed its warning point or its target; ``to`` were told."""

    kind: ClassVar[str] = "sla_alert"
    clock: str = ""
    policy: str = ""
    to: tuple[str, ...] = ()  # whom the policy escalates to: assignee, admin
    as_of: datetime | None = None
    due_at: datetime | None = None
    target_minutes: float | None = None
    elapsed_minutes: float = 0


@dataclass(frozen=True, slots=True)
class SlaWarning(SlaAlert):
    kind: ClassVar[str] = "sla_warning"


@dataclass(frozen=True, slots=True)
class SlaBreached(SlaAlert):
    kind: ClassVar[str] = "sla_breached"


@dataclass(frozen=True, slots=True)
class Idle(TicketEvent):
    """No public message on the ticket since ``since``: ``hours`` business hours (the SLA
    daemon's tick says so for open tickets; automations on "idle" act on it)."""

    kind: ClassVar[str] = "idle"
    since: datetime | None = None
    hours: float = 0


Listener = Callable[[TicketEvent, "Tx"], Awaitable[None]]
"""Called with every event, inside the transaction of the change (see `Tx`)."""


_FIELD_ACTIONS: dict[type[TicketEvent], Change] = {
    StatusChanged: Change.STATUS, PriorityChanged: Change.PRIORITY,
    CategoryChanged: Change.CATEGORY, Assigned: Change.ASSIGNEE, TagsChanged: Change.TAGS,
    TypeChanged: Change.TYPE,
}


def audit_values(event: TicketEvent) -> list[dict[str, Any]]:
    """The audit rows of ``event`` (none for events that restate another's change).

    The actions and their before/after shapes are the history already stored, so they
    stay as they are: ``helpdesk.history.Change`` pins the actions.
    """

    def row(action: str, *, ticket_id: int | None = None, before: dict[str, Any] | None = None,
            after: dict[str, Any] | None = None, reason: str = "") -> dict[str, Any]:
        return audit.values(ticket_id=event.ticket.id if ticket_id is None else ticket_id,
                            actor=event.actor, action=action, at=event.at, before=before,
                            after=after, reason=reason)

    match event:
        case TicketCreated(message=message):
            created = row(Change.CREATED, after=dict(event.snapshot), reason=event.reason)
            if message is None:
                return [created]
            return [created, row(Change.of_message(message.kind), after={
                "message": message.id, "attachments": message.attachments})]
        case MessageAdded(message=message) if message is not None:
            return [row(Change.of_message(message.kind),
                        after={"message": message.id, "attachments": message.attachments})]
        case FieldChanged():
            action = _FIELD_ACTIONS.get(type(event)) or Change.of_field(event.name)
            return [row(action, before={event.name: _jsonable(event.before)},
                        after={event.name: _jsonable(event.after)}, reason=event.reason)]
        case WatcherAdded():
            return [row(Change.WATCHER_ADDED,
                        after={"watcher": event.email, "source": event.source})]
        case WatcherRemoved():
            return [row(Change.WATCHER_REMOVED, before={"watcher": event.email})]
        case Merged(into=into) if into is not None:
            return [row(Change.MERGED, before={"merged_into": None},
                        after={"merged_into": event.into_ref, "messages": event.moved_messages}),
                    row(Change.MERGED_IN, ticket_id=into.id,
                        after={"merged": event.source_ref, "messages": event.moved_messages})]
        case Deleted():
            return [row(Change.DELETED, before={"deleted": False}, after={"deleted": True})]
        case Restored():
            return [row(Change.RESTORED, before={"deleted": True}, after={"deleted": False})]
        case Unlinked():
            return [row(Change.UNLINKED, before=_link_values(event))]
        case Linked():
            return [row(Change.LINKED, after=_link_values(event))]
        case TimeLogged():
            return [row(Change.TIME_LOGGED, after={"minutes": event.minutes, "note": event.note,
                                                   "entry": event.entry})]
        case CsatRated():
            return [row(Change.CSAT_RATED,
                        before=dict(event.previous) if event.previous is not None else None,
                        after={"score": event.score, "comment": event.comment})]
        case LinksRevoked():
            return [row(Change.LINKS_REVOKED, after={"links": "revoked"}, reason=event.reason)]
        case SlaAlert():
            action = Change.SLA_BREACH if isinstance(event, SlaBreached) else Change.SLA_WARNING
            return [row(action, after={
                "clock": event.clock, "to": list(event.to),
                "as_of": _jsonable(event.as_of), "due_at": _jsonable(event.due_at),
                "policy": event.policy})]
    return []


def _link_values(event: Linked) -> dict[str, Any]:
    values = {"link": event.link, "ticket": event.other or None, "url": event.url or None,
              "title": event.title or None}
    return {k: v for k, v in values.items() if v is not None}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
