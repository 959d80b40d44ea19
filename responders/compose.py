"""Build the MIME message for one outbox row from the row and a small read model (pure).

No database, network or clock here: the caller loads a :class:`ReadModel` (ticket,
message, attachment bytes, who the recipients are), passes ``now`` for the Date header,
and gets an :class:`email.message.EmailMessage` ready for the smarthost.

Headers of every mail:

- ``From``: ``[instance] name <[outbound] from>``; ``To``: the row's recipients.
- ``Subject``: ``[TKT-000042] original subject`` (reply prefixes and an old token stripped).
- ``Message-ID``: the row's, minted when the row was written, so a retry reuses it.
- ``In-Reply-To`` / ``References``: from the row (the requester's last message, the thread).
- ``Reply-To``: the ticket's queue address, signed plus-addressed (``support+t42.mac@``),
  which threads the reply even when a smarthost rewrites Message-IDs; for mail to agents
  the agent's own signed reply address, given as ``row.context["reply_to"]``.
- ``X-Helpdesk-Ticket: TKT-000042`` and ``X-Helpdesk-Loop: <instance id>``.
- ``Auto-Submitted: auto-replied`` on acknowledgements, ``auto-generated`` on every other
  automatic mail (notices to agents and admins, the resolved notice, SLA alerts), with
  ``X-Auto-Response-Suppress: All``; none of the two on an agent's reply (kind ``reply``),
  which a human wrote.

Mail to the requester's side (every recipient that is a contact, not an agent) carries
a signed portal view link ``{base_url}/t/{token}``; the token binds the ticket id and the
recipient's contact id (a watcher gets a link of their own). The resolved notice adds five
one-click rating links (``/csat/{token}?score=1..5``, one rate token). A row about an
internal note is refused (:class:`InternalNoteRefused`) unless every recipient is an agent.

Bodies come from Jinja2 templates ``<template>.txt`` and ``<template>.html`` (autoescaped)
looked up first in ``[outbound] templates_dir`` when set, then in ``templates/email/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import jinja2

from helpdesk.config import Settings
from helpdesk.errors import HelpdeskError
from helpdesk.links import LinkSigner, Purpose, rate_url, view_url
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import OutboxRow
from helpdesk.outbox import INTERNAL_KINDS, REQUESTER_KINDS
from helpdesk.resources import templates_dir

DEFAULT_TEMPLATES = templates_dir("email")

AUTO_SUBMITTED: Mapping[str, str | None] = {"ack": "auto-replied", "reply": None}
"""Auto-Submitted per row kind (RFC 3834); any kind not listed is ``auto-generated``."""

_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|antwort|fwd?|wg|tr|rv|r|res|odp|返信|回复|答复)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)


class ComposeError(HelpdeskError):
    """Raised when a row cannot be turned into a mail (missing data, a broken template).

    Retrying does not help: the row is marked failed and the admin told.
    """


class InternalNoteRefused(ComposeError):
    """Raised when a row about an internal note would go to anyone who is not an agent."""


@dataclass(frozen=True)
class OutgoingRow:
    """The parts of an outbox row that composing reads (a detached snapshot)."""

    id: int
    kind: str
    template: str
    recipients: tuple[str, ...]
    message_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: OutboxRow) -> OutgoingRow:
        return cls(id=row.id, kind=row.kind, template=row.template,
                   recipients=tuple(row.recipients), message_id=row.message_id,
                   in_reply_to=row.in_reply_to, references=tuple(row.references or ()),
                   context=dict(row.context or {}))


@dataclass(frozen=True)
class TicketView:
    """What a mail says about its ticket."""

    id: int
    number: int
    reference: str
    subject: str
    status: str
    priority: str
    queue_address: str
    requester_email: str
    requester_name: str
    link_secret: str


@dataclass(frozen=True)
class AttachmentData:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class MessageView:
    """The ticket message a row is about (the agent's reply, the requester's mail)."""

    kind: str
    text: str
    author_name: str = ""
    author_email: str = ""
    attachments: tuple[AttachmentData, ...] = ()


@dataclass(frozen=True)
class ReadModel:
    """Everything a row's mail needs besides the row.

    Attributes:
        ticket: the row's ticket, None for mail about no ticket.
        message: the message the row is about; its attachments are forwarded on replies.
        contacts: recipient address -> contact id, for recipients that are contacts.
        agents: recipient addresses that belong to agents.
    """

    ticket: TicketView | None
    message: MessageView | None = None
    contacts: Mapping[str, int] = field(default_factory=dict)
    agents: frozenset[str] = frozenset()


def clean_subject(subject: str, prefix: str = "TKT-") -> str:
    """The subject without reply prefixes (``Re:``, ``AW:``, ...) or an old ticket token."""
    token = re.compile(r"\[\s*" + re.escape(prefix) + r"\d+\s*\]\s*", re.IGNORECASE)
    text = " ".join(subject.split())
    while True:
        stripped = token.sub("", _PREFIX.sub("", text), count=1).strip()
        if stripped == text:
            return text or "(no subject)"
        text = stripped


def template_environment(override_dir: str | Path | None = None) -> jinja2.Environment:
    """Templates from ``override_dir`` first (when given), then the built-in ones."""
    loaders: list[jinja2.BaseLoader] = []
    if override_dir:
        loaders.append(jinja2.FileSystemLoader(str(override_dir)))
    loaders.append(jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )


class Composer:
    """Turns (row, read model) into a message; built once per worker from the settings.

    Args:
        settings: the process settings (instance, outbound, portal, tickets).
        signer: makes the portal tokens.
        templates: the Jinja2 environment (see :func:`template_environment`).
    """

    def __init__(self, settings: Settings, signer: LinkSigner,
                 templates: jinja2.Environment) -> None:
        self.settings = settings
        self.signer = signer
        self.templates = templates

    @classmethod
    def from_settings(cls, settings: Settings, clock: Any) -> Composer:
        """A composer with a link signer on ``[portal]`` keys and the configured templates."""
        portal = settings.portal
        signer = LinkSigner(portal.secret_key, view_max_age=timedelta(days=portal.view_link_days),
                            rate_max_age=timedelta(days=portal.rating_link_days), clock=clock)
        override = settings.outbound.templates_dir or None
        return cls(settings, signer, template_environment(override))

    def compose(self, row: OutgoingRow, read: ReadModel, *, now: datetime) -> EmailMessage:
        """The complete message for ``row``.

        Raises:
            InternalNoteRefused: the row is about an internal note and a recipient is not
                an agent.
            ComposeError: a requester mail without the data for its portal link, or a
                template that is missing or fails to render.
        """
        if read.message is not None and read.message.kind == "internal":
            outsiders = [r for r in row.recipients if r not in read.agents]
            if outsiders:
                raise InternalNoteRefused(
                    f"row {row.id} is about an internal note; not agents: {outsiders}")
        msg = EmailMessage()
        self._headers(msg, row, read, now)
        text, html = self._bodies(row, read)
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        if row.kind == "reply" and read.message is not None:
            for a in read.message.attachments:
                maintype, _, subtype = a.content_type.partition("/")
                if not subtype or maintype == "multipart":
                    maintype, subtype = "application", "octet-stream"
                msg.add_attachment(a.data, maintype=maintype, subtype=subtype,
                                   filename=a.filename or "attachment")
        return msg

    # -- headers ----------------------------------------------------------------------

    def subject(self, row: OutgoingRow, read: ReadModel) -> str:
        if read.ticket is None:
            base = str(row.context.get("subject") or self.settings.instance.name)
        else:
            cleaned = clean_subject(read.ticket.subject, self.settings.tickets.prefix)
            base = f"[{read.ticket.reference}] {cleaned}"
        return f"Undeliverable: {base}" if row.kind == "admin_notice" else base

    def _headers(self, msg: EmailMessage, row: OutgoingRow, read: ReadModel,
                 now: datetime) -> None:
        settings = self.settings
        msg["From"] = formataddr((settings.instance.name, settings.outbound.sender))
        msg["To"] = ", ".join(row.recipients)
        msg["Subject"] = self.subject(row, read)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = row.message_id
        references = [r for r in row.references if r]
        if row.in_reply_to:
            msg["In-Reply-To"] = row.in_reply_to
            if row.in_reply_to not in references:
                references.append(row.in_reply_to)
        if references:
            msg["References"] = " ".join(references)
        msg["Reply-To"] = self._reply_to(row, read)
        if read.ticket is not None:
            msg["X-Helpdesk-Ticket"] = read.ticket.reference
        msg["X-Helpdesk-Loop"] = settings.instance.id
        auto = AUTO_SUBMITTED.get(row.kind, "auto-generated")
        if auto is not None:
            msg["Auto-Submitted"] = auto
            msg["X-Auto-Response-Suppress"] = "All"

    def _reply_to(self, row: OutgoingRow, read: ReadModel) -> str:
        personal = row.context.get("reply_to")
        if isinstance(personal, str) and personal:
            return personal
        if read.ticket is None:
            return self.settings.outbound.sender
        # A staff-only notice never carries the requester-facing address: an answer to it
        # goes to the internal address and is filed as an internal note.
        return make_reply_address(read.ticket.queue_address, read.ticket.number,
                                  secret=self.settings.portal.secret_key[-1],
                                  internal=row.kind in INTERNAL_KINDS)

    # -- bodies -----------------------------------------------------------------------

    def _links(self, row: OutgoingRow, read: ReadModel) -> tuple[str | None, list[Any]]:
        ticket = read.ticket
        contact = next((read.contacts[r] for r in row.recipients if r in read.contacts), None)
        if ticket is None or contact is None or not ticket.link_secret:
            if row.kind in REQUESTER_KINDS:
                raise ComposeError(f"row {row.id}: no ticket or contact for the portal link")
            return None, []
        base = self.settings.portal.base_url
        view = view_url(base, self.signer.sign(Purpose.VIEW, ticket.id, contact,
                                               ticket.link_secret))
        ratings: list[Any] = []
        if row.kind == "resolved":
            token = self.signer.sign(Purpose.RATE, ticket.id, contact, ticket.link_secret)
            ratings = [{"score": s, "url": rate_url(base, token, s)} for s in range(1, 6)]
        return view, ratings

    def _bodies(self, row: OutgoingRow, read: ReadModel) -> tuple[str, str]:
        view, ratings = self._links(row, read)
        context = {
            "kind": row.kind,
            "instance": {"name": self.settings.instance.name, "id": self.settings.instance.id},
            "ticket": read.ticket,
            "message": read.message,
            "recipients": list(row.recipients),
            "context": row.context,
            "view_url": view,
            "rating_links": ratings,
            "subject": self.subject(row, read),
            "topic": clean_subject(read.ticket.subject, self.settings.tickets.prefix)
            if read.ticket else "",
        }
        try:
            text = self.templates.get_template(f"{row.template}.txt").render(context)
            html = self.templates.get_template(f"{row.template}.html").render(context)
        except jinja2.TemplateError as exc:
            raise ComposeError(
                f"template {row.template!r}: {type(exc).__name__}: {exc}") from exc
        return text, html
