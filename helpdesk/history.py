"""The names of what happens to a ticket, as the ticket service records and emits them.

One vocabulary for the writer (`helpdesk.tickets`) and its readers (the SLA engine's
clocks, notifications): a reader asks for ``Change.STATUS``, never for a string it
hopes the writer still uses. The values are stored in ``audit_events.action``, so they
are fixed (a test pins them): renaming one would orphan the history already written.
"""

from __future__ import annotations

from enum import StrEnum


class Change(StrEnum):
    """A ticket change, by the audit action it is stored under."""

    CREATED = "ticket.created"
    STATUS = "ticket.status"
    PRIORITY = "ticket.priority"
    CATEGORY = "ticket.category"
    TYPE = "ticket.type"
    ORGANIZATION = "ticket.organization"
    CHANNEL = "ticket.channel"
    TAGS = "ticket.tags"
    ASSIGNEE = "ticket.assignee"
    DUE = "ticket.due_at"
    SUBJECT = "ticket.subject"
    WATCHER_ADDED = "ticket.watcher_added"
    WATCHER_REMOVED = "ticket.watcher_removed"
    MESSAGE_PUBLIC = "message.public"
    MESSAGE_INTERNAL = "message.internal"
    MESSAGE_SYSTEM = "message.system"
    MESSAGE_DRAFT = "message.draft"  # a reply the collision guard held
    STATUS_RENAMED = "status.renamed"  # the desk's, not one ticket's: ticket_id is NULL
    DELETED = "ticket.deleted"
    RESTORED = "ticket.restored"
    PURGED = "ticket.purged"  # ticket_id is NULL: the ticket is gone
    LINKED = "ticket.linked"
    UNLINKED = "ticket.unlinked"
    MERGED = "ticket.merged"
    MERGED_IN = "ticket.merged_in"
    TIME_LOGGED = "ticket.time"
    LINKS_REVOKED = "ticket.links_revoked"
    CSAT_RATED = "csat.rated"
    SLA_WARNING = "sla.warning"
    SLA_BREACH = "sla.breach"
    AUTOMATION_FIRED = "automation.fired"

    @classmethod
    def of_field(cls, name: str) -> Change:
        """The change of ticket field ``name``.

        Raises:
            ValueError: no change is defined for that field (add it here first).
        """
        return cls(f"ticket.{name}")

    @classmethod
    def of_message(cls, kind: str) -> Change:
        """The change of adding a message of ``kind`` (public, internal, system)."""
        return cls(f"message.{kind}")
