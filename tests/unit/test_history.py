"""The change names the ticket service stores are the ones the SLA clocks read, for good."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpdesk.history import Change

STORED = {
    Change.CREATED: "ticket.created", Change.STATUS: "ticket.status",
    Change.PRIORITY: "ticket.priority", Change.CATEGORY: "ticket.category",
    Change.CHANNEL: "ticket.channel", Change.TAGS: "ticket.tags",
    Change.ASSIGNEE: "ticket.assignee", Change.DUE: "ticket.due_at",
    Change.SUBJECT: "ticket.subject", Change.WATCHER_ADDED: "ticket.watcher_added",
    Change.WATCHER_REMOVED: "ticket.watcher_removed", Change.MESSAGE_PUBLIC: "message.public",
    Change.MESSAGE_INTERNAL: "message.internal", Change.MESSAGE_SYSTEM: "message.system",
    Change.MERGED: "ticket.merged", Change.MERGED_IN: "ticket.merged_in",
    Change.TIME_LOGGED: "ticket.time", Change.LINKS_REVOKED: "ticket.links_revoked",
    Change.CSAT_RATED: "csat.rated", Change.SLA_WARNING: "sla.warning",
    Change.SLA_BREACH: "sla.breach", Change.AUTOMATION_FIRED: "automation.fired",
    Change.TYPE: "ticket.type", Change.LINKED: "ticket.linked",
    Change.UNLINKED: "ticket.unlinked", Change.STATUS_RENAMED: "status.renamed",
    Change.ORGANIZATION: "ticket.organization", Change.DELETED: "ticket.deleted",
    Change.RESTORED: "ticket.restored", Change.PURGED: "ticket.purged",
    Change.MESSAGE_DRAFT: "message.draft",
}


def test_the_stored_names_never_change() -> None:
    # audit_events.action holds these: a renamed value would orphan every history already
    # written, and the SLA clocks would silently stop counting its status changes
    assert {c: c.value for c in Change} == STORED


def test_every_field_the_ticket_service_changes_has_a_name() -> None:
    source = (Path(__file__).parents[2] / "helpdesk" / "tickets.py").read_text()
    fields = set(re.findall(r'_set_field\(ticket, "(\w+)"', source))
    fields |= set(re.findall(r'_changed\(\s*ticket, actor, "(\w+)"', source))
    assert {"status", "priority", "category", "assignee", "due_at"} <= fields
    for name in fields:
        assert Change.of_field(name).value == f"ticket.{name}"


def test_an_unknown_field_is_an_error_not_a_new_name() -> None:
    with pytest.raises(ValueError):
        Change.of_field("colour")
