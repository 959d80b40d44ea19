"""Which queue a message arrives in, and which routing rule (first match wins) shapes its ticket."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from helpdesk.config import RoutingRule, Settings, SmtpSettings
from helpdesk.mailtokens import base_address
from mailgate.parse import Address, Inbound


@dataclass(frozen=True)
class Route:
    queue: str = ""
    category: str | None = None
    priority: str | None = None
    type: str | None = None
    tags: tuple[str, ...] = ()
    assignee: str = ""
    autoresponder_template: str = "acknowledgement"
    rule: str = ""


def _matches(pattern: str, value: str, mode: str) -> bool:
    if not pattern:
        return True
    if mode == "regex":
        try:
            return re.search(pattern, value, re.IGNORECASE) is not None
        except re.error:
            return False
    return pattern.lower() in value.lower()


def rule_matches(rule: RoutingRule, *, sender: str, recipients: Sequence[str], subject: str,
                 body: str) -> bool:
    """Whether every condition of an enabled rule holds (pure)."""
    if not rule.enabled:
        return False
    return (
        _matches(rule.sender, sender, rule.match)
        and (not rule.recipient or any(_matches(rule.recipient, r, rule.match) for r in recipients))
        and _matches(rule.subject, subject, rule.match)
        and _matches(rule.body, body, rule.match)
    )


def resolve_queue(settings: Settings, recipients: Sequence[str], msg: Inbound) -> Route:
    """The queue of the first recipient that names one, then the first matching rule.

    One mail to several of our addresses (support@ and billing@) lands in the first
    configured queue that matches, so it makes one ticket.
    """
    bases = [base_address(r) for r in recipients]
    queue = next((q for q in settings.queues if q.address.lower() in bases), None)
    route = Route(
        queue=queue.address.lower() if queue else "",
        category=queue.category if queue else None,
        autoresponder_template=queue.autoresponder_template if queue else "acknowledgement",
    )
    sender = msg.sender.email if msg.sender else ""
    for rule in settings.routing:
        if rule_matches(rule, sender=sender, recipients=bases, subject=msg.subject,
                        body=msg.text):
            return Route(
                queue=route.queue, category=rule.category or route.category,
                priority=rule.priority or None, type=rule.type or None, tags=rule.tags,
                assignee=rule.assignee,
                autoresponder_template=route.autoresponder_template, rule=rule.name)
    return route


def accepts_recipient(settings: SmtpSettings, address: str) -> bool:
    """Whether ``address`` is ours (see `SmtpSettings.accepts`, the one rule).

    The SMTP and LMTP receivers refuse anything else (no open relay); the pipeline uses
    the same rule so that a CC to one of our own addresses never becomes a watcher.
    """
    return settings.accepts(address)


def cc_watchers(settings: SmtpSettings, msg: Inbound, sender: str) -> list[Address]:
    """The CC addresses of a first mail that become watchers: not ours, not the sender."""
    return [a for a in msg.cc
            if a.email and not accepts_recipient(settings, a.email) and a.email != sender]


def header_recipients(msg: Inbound) -> list[str]:
    """To and Cc addresses: the queue's clue when no envelope recipient is known (the pipe)."""
    return [a.email for a in (*msg.to, *msg.cc) if a.email]
