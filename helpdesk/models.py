"""The database schema: SQLAlchemy 2.x declarative models shared by every process role."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend; SQLite would otherwise hand back naive values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The default clock: aware UTC now."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Counter(Base):
    """Race-safe sequences (ticket numbers): one row per name, bumped inside the transaction."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrganizationDomain(Base):
    """Another mail domain of an organization (``helpdesk orgs add-domain``): its senders
    belong to it as those of ``organizations.domain`` do."""

    __tablename__ = "organization_domains"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="member")  # member | owner | admin
    is_undeliverable: Mapped[bool] = mapped_column(Boolean, default=False)
    undeliverable_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    organization: Mapped[Organization | None] = relationship(lazy="joined")


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_new_ticket: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_assignment: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_reply: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_status: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_board: Mapped[bool] = mapped_column(Boolean, default=True)  # the daily board
    board_sent_on: Mapped[date | None] = mapped_column(Date)  # local day it last went out
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    away_until: Mapped[datetime | None]  # skipped by auto-assignment until then
    last_assigned_at: Mapped[datetime | None]
    role: Mapped[str] = mapped_column(String(20), default="agent")  # admin | agent | light

    def is_away(self, now: datetime) -> bool:
        return self.away_until is not None and self.away_until > now


class AssignmentTurn(Base):
    """A team's round-robin position: locked while a ticket is assigned in that team."""

    __tablename__ = "assignment_turns"
    team: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    turns: Mapped[int] = mapped_column(BigInteger, default=0)


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50), index=True)
    priority: Mapped[str] = mapped_column(String(50))
    category: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(50), default="Other", index=True)
    channel: Mapped[str] = mapped_column(String(20))
    queue: Mapped[str] = mapped_column(String(320), default="")
    requester_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    due_at: Mapped[datetime | None]
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    followup_of_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    link_secret: Mapped[str] = mapped_column(String(64))
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None] = mapped_column(index=True)
    closed_at: Mapped[datetime | None]
    sla_policy: Mapped[str] = mapped_column(String(100), default="")
    sla_next_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)  # in the trash since

    requester: Mapped[Contact] = relationship(lazy="joined", foreign_keys=[requester_id])
    assignee: Mapped[Agent | None] = relationship(lazy="joined")
    organization: Mapped[Organization | None] = relationship(lazy="joined")


class TicketLink(Base):
    """A ticket's tie to another ticket or to where the work happens (a task, an issue).

    One row per link, read from both ends: ``parent`` means ``other_ticket`` is this
    ticket's parent (so this is the other's child), ``followup`` that this ticket follows
    up ``other_ticket``; ``related`` reads the same both ways. ``task``, ``issue`` and
    ``incident`` point at a ``url`` outside the help desk.
    """

    __tablename__ = "ticket_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    other_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    url: Mapped[str | None] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatusRow(Base):
    """A ticket status the admin keeps (``helpdesk statuses``): its name, class and colour.

    Tickets hold the status by name; the class (active, paused, resolved, closed) is what
    the SLA clock and the rest of the code reason about.
    """

    __tablename__ = "statuses"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    status_class: Mapped[str] = mapped_column(String(20))
    color: Mapped[str] = mapped_column(String(20), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)


class TicketTag(Base):
    __tablename__ = "ticket_tags"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class Watcher(Base):
    __tablename__ = "watchers"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(20), default="added")  # cc | added
    contact: Mapped[Contact] = relationship(lazy="joined")


class InboundSpool(Base):
    """One row per received message: its raw bytes (or their blob), dedupe key and fate.

    ``raw`` holds a mail up to ``storage.raw_in_database_bytes`` (most mail), written in
    the transaction that applies it; a larger one is in the blob store under ``sha256``.
    Deferred: listings and lookups of spool rows never load it.
    """

    __tablename__ = "inbound_spool"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    via: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # public | internal | system
    author_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    author_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    via: Mapped[str] = mapped_column(String(20), default="email")
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    full_text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    spool_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_spool.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    author_contact: Mapped[Contact | None] = relationship(lazy="joined")
    author_agent: Mapped[Agent | None] = relationship(lazy="joined")
    attachments: Mapped[list[Attachment]] = relationship(
        lazy="selectin", order_by="Attachment.id"
    )


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    is_inline: Mapped[bool] = mapped_column(Boolean, default=False)
    content_id: Mapped[str | None] = mapped_column(String(998))


class MessageRef(Base):
    """Every Message-ID we received or sent for a ticket, for threading replies."""

    __tablename__ = "message_refs"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    actor: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxRow(Base):
    """An email we will send, written in the transaction of the change it announces."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    about_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    to_addr: Mapped[str] = mapped_column(String(320))  # ix_outbox_to_addr_created leads with it
    # to_addr's mailbox (plus-tag dropped) and domain, for the acknowledgement limits
    to_mailbox: Mapped[str | None] = mapped_column(String(320))
    to_domain: Mapped[str | None] = mapped_column(String(255))
    recipients: Mapped[list[Any]] = mapped_column(JSON)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[Any]] = mapped_column(JSON, default=list)
    template: Mapped[str] = mapped_column(String(100))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_to_addr_created", "to_addr", "created_at"),
                      # the hourly acknowledgement counts: ranges of these indexes alone
                      Index("ix_outbox_mailbox_kind_created", "to_mailbox", "kind",
                            "created_at"),
                      Index("ix_outbox_domain_kind_created", "to_domain", "kind", "created_at"))


class CannedResponse(Base):
    __tablename__ = "canned_responses"
    id: Mapped[int] = mapped_column(primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(100), default="")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlaPolicyRow(Base):
    __tablename__ = "sla_policies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)


class SlaClock(Base):
    """One SLA clock (first response or resolution) of one ticket."""

    __tablename__ = "sla_clocks"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    target_minutes: Mapped[float | None]
    elapsed_minutes: Mapped[float] = mapped_column(default=0.0)
    running_since: Mapped[datetime | None]
    met_at: Mapped[datetime | None]
    warned: Mapped[bool] = mapped_column(Boolean, default=False)
    breached: Mapped[bool] = mapped_column(Boolean, default=False)


class CsatRating(Base):
    __tablename__ = "csat_ratings"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TimeEntry(Base):
    __tablename__ = "time_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    minutes: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportRun(Base):
    """A scheduled report's period (``weekly:2026-W50``) once its mail is queued."""

    __tablename__ = "report_runs"
    period: Mapped[str] = mapped_column(String(40), primary_key=True)
    sent_at: Mapped[datetime]


class ImapState(Base):
    """Per-mailbox UIDVALIDITY and last seen UID, so a restart resumes where it stopped."""

    __tablename__ = "imap_state"
    mailbox: Mapped[str] = mapped_column(String(500), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    holder: Mapped[str] = mapped_column(String(200), default="")
    lease_until: Mapped[datetime | None]


__all__ = [
    "Agent", "Attachment", "AuditEvent", "Base", "CannedResponse", "Contact", "Counter",
    "CsatRating", "ImapState", "InboundSpool", "Message", "MessageRef", "Organization",
    "OrganizationDomain", "OutboxRow", "ReportRun", "SlaClock", "SlaPolicyRow", "StatusRow",
    "Ticket", "TicketLink", "TicketTag", "TimeEntry", "Watcher", "utcnow",
]
