"""Build the MIME message for one outbox row from the row and a small read model (pure).

No database, network or clock here: the caller loads a :class:`ReadModel` (ticket,
message, attachment bytes, who the recipients are), passes ``now`` for the Date header,
and gets an :class:`email.message.EmailMessage` ready for the smarthost.

Headers of every mail:

- ``From``: ``[instance] name <[outbound] from>``; ``To``: the row's recipients.
- ``Subject``: ``[TKT-000042] original subject`` (:func:`helpdesk.subjects.outbound_subject`:
  reply prefixes in every language the gateway reads, and our old tokens, stripped).
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

Every header value is built by :mod:`helpdesk.mailheaders` from plain decoded text (control
characters and line separators become spaces), encoded once by us and stored with
``Message.set_raw`` on a message whose policy never refolds: an attacker's subject, name
or Message-ID is text in our mail, never a header line or a body. Echoed Message-IDs
(``In-Reply-To``, ``References``) that are not RFC 5322 msg-ids are dropped, recipients
that are not plain ``local@host`` addresses are left out (none left: :class:`ComposeError`).
Bodies are 7bit or quoted-printable, so the mail needs no 8BITMIME; forwarded attachments
keep their bytes, their content type only when it is well-formed, their file name as
RFC 2231 data.

Bodies come from Jinja2 templates ``<template>.txt`` and ``<template>.html`` (autoescaped)
looked up first in ``[outbound] templates_dir`` when set, then in ``templates/email/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

from helpdesk import mailheaders
from helpdesk.config import Settings
from helpdesk.errors import HelpdeskError
from helpdesk.links import LinkSigner, Purpose, rate_url, view_url
from helpdesk.mailtokens import make_reply_address
from helpdesk.models import OutboxRow
from helpdesk.outbox import INTERNAL_KINDS, REQUESTER_KINDS
from helpdesk.resources import templates_dir
from helpdesk.subjects import NO_SUBJECT, outbound_subject, shorten, topic

DEFAULT_TEMPLATES = templates_dir("email")

AUTO_SUBMITTED: Mapping[str, str | None] = {"ack": "auto-replied", "reply": None}
"""Auto-Submitted per row kind (RFC 3834); any kind not listed is ``auto-generated``."""

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
    ticket_id: int | None = None

    @classmethod
    def from_row(cls, row: OutboxRow) -> OutgoingRow:
        return cls(id=row.id, kind=row.kind, template=row.template,
                   recipients=tuple(row.recipients), message_id=row.message_id,
                   in_reply_to=row.in_reply_to, references=tuple(row.references or ()),
                   context=dict(row.context or {}), ticket_id=row.ticket_id)


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
    type: str = ""
    category: str = ""
    links: tuple[str, ...] = ()  # "parent TKT-000010 (Open): subject", staff mail only


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


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """``text`` with lone surrogates (undecodable input kept as escapes) as U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _transfer_encoding(text: str) -> str:
    """``7bit`` for short lines of printable ASCII, else ``quoted-printable`` (never 8bit)."""
    lines = text.splitlines()
    if text.isascii() and all(len(line) <= 78 and line.replace("\t", " ").isprintable()
                              for line in lines):
        return "7bit"
    return "quoted-printable"


def _attachment(a: AttachmentData, msg: EmailMessage) -> EmailMessage:
    """One forwarded attachment: its bytes in base64, a well-formed type, the name as data."""
    maintype, subtype = mailheaders.mime_type(a.content_type)
    part = EmailMessage(policy=msg.policy)
    part.set_content(a.data, maintype=maintype, subtype=subtype)
    part.set_raw("Content-Disposition", mailheaders.attachment_disposition(a.filename))
    return part


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
        override = settings.outbound.templates_dir or None
        return cls(settings, LinkSigner.from_settings(settings, clock),
                   template_environment(override))

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
        msg = EmailMessage(policy=mailheaders.WIRE_POLICY)
        self._headers(msg, row, read, now)
        text, html = self._bodies(row, read)
        msg.set_content(text, cte=_transfer_encoding(text))
        msg.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
        if row.kind in ("reply", "report") and read.message is not None:
            if read.message.attachments and msg.get_content_subtype() != "mixed":
                msg.make_mixed()
            for a in read.message.attachments:
                msg.attach(_attachment(a, msg))
        return msg

    # -- headers ----------------------------------------------------------------------

    def subject(self, row: OutgoingRow, read: ReadModel) -> str:
        """The Subject as plain text: :func:`helpdesk.subjects.outbound_subject` for a ticket."""
        if read.ticket is None:
            base = shorten(str(row.context.get("subject") or self.settings.instance.name))
        else:
            t = self.settings.tickets
            base = outbound_subject(read.ticket.number, read.ticket.subject, t.prefix, t.digits)
        return f"Undeliverable: {base}" if row.kind == "admin_notice" else base

    def recipients(self, row: OutgoingRow) -> list[str]:
        """The row's recipients that are addresses we write (see :func:`mailheaders.address`)."""
        return [a for a in (mailheaders.address(r) for r in row.recipients) if a]

    def _headers(self, msg: EmailMessage, row: OutgoingRow, read: ReadModel,
                 now: datetime) -> None:
        """Set every top-level header as a raw value built by :mod:`helpdesk.mailheaders`."""
        settings = self.settings
        message_id = mailheaders.msg_id(row.message_id)
        recipients = self.recipients(row)
        if message_id is None or not recipients:
            raise ComposeError(f"row {row.id}: no valid Message-ID or recipient")
        try:
            sender = mailheaders.mailbox("From", settings.instance.name,
                                         settings.outbound.sender)
            reply_to = mailheaders.mailbox("Reply-To", "", self._reply_to(row, read))
        except ValueError as exc:
            raise ComposeError(f"row {row.id}: {exc}") from exc
        msg.set_raw("From", sender)
        msg.set_raw("To", mailheaders.address_list("To", recipients))
        msg.set_raw("Subject", mailheaders.unstructured("Subject", self.subject(row, read)))
        msg.set_raw("Date", format_datetime(now))
        msg.set_raw("Message-ID", message_id)
        references = [r for r in map(mailheaders.msg_id, row.references) if r]
        in_reply_to = mailheaders.msg_id(row.in_reply_to)
        if in_reply_to:
            msg.set_raw("In-Reply-To", in_reply_to)
            if in_reply_to not in references:
                references.append(in_reply_to)
        if references:
            msg.set_raw("References", mailheaders.msg_id_list("References", references))
        msg.set_raw("Reply-To", reply_to)
        if read.ticket is not None:
            msg.set_raw("X-Helpdesk-Ticket", mailheaders.unstructured(
                "X-Helpdesk-Ticket", read.ticket.reference))
        msg.set_raw("X-Helpdesk-Loop", mailheaders.unstructured(
            "X-Helpdesk-Loop", settings.instance.id))
        auto = AUTO_SUBMITTED.get(row.kind, "auto-generated")
        if auto is not None:
            msg.set_raw("Auto-Submitted", auto)
            msg.set_raw("X-Auto-Response-Suppress", "All")

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
            "topic": topic(read.ticket.subject, self.settings.tickets.prefix) or NO_SUBJECT
            if read.ticket else "",
        }
        try:
            text = self.templates.get_template(f"{row.template}.txt").render(context)
            html = self.templates.get_template(f"{row.template}.html").render(context)
        except jinja2.TemplateError as exc:
            raise ComposeError(
                f"template {row.template!r}: {type(exc).__name__}: {exc}") from exc
        return _encodable(text), _encodable(html)
