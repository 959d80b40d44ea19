"""Decide whether an inbound mail was written by a person or must be ignored as automatic.

A help desk that answers automatic mail ends up in mail loops, and one that opens tickets
for bounces buries agents, so every mail is sorted before threading. The rules run in a
fixed order and the first that matches wins:

1. loop: ``X-Helpdesk-Loop`` names this instance (our own mail came back), or the mail
   is from one of our own addresses (a copy stripped of our headers on the way back, or
   someone writing as us: neither is a customer).
2. auto_reply, challenge-response only: sender verification systems (Boxbe, Bluebottle)
   dress their challenges as delivery reports, so they are recognised before bounces.
3. bounce: ``multipart/report`` delivery-status or feedback-report, a delivery-status part,
   a MAILER-DAEMON / postmaster / empty sender, an unmistakable bounce subject, or a weaker
   bounce subject or bounce text backed by another sign of a machine (``Auto-Submitted``,
   null ``Return-Path``, a returned copy of the original message). Then, for mail from a
   sender that looks like a system (a daemon, an administrator, a list server, a machine
   local part or display name) or with one of those signs but the subject: a bounce that
   flufl.bounce's detectors recognise (Exchange, qmail, Exim and dozens of other non-RFC
   3464 formats, see ``mailgate._bounces``), or a mail-loop alert.
4. auto_reply: ``Auto-Submitted`` other than ``no``, ``X-Autoreply``, ``X-Autorespond``,
   ``X-Auto-Response-Suppress`` All/OOF/AutoReply, ``Precedence: auto_reply``, read
   receipts, out-of-office subjects, a null ``Return-Path``.
5. list: ``Precedence`` bulk/junk/list, ``List-Id``, ``List-Unsubscribe`` (a ticket when
   lists are not ignored, but never an automatic answer).

Subjects alone only count when anchored at the start and specific: a customer writing
"Delivery failed for order 123" or "Vacation request" must still get a ticket. For the same
reason flufl.bounce is only asked about machine-made mail: its heuristics also match a
customer who forwards a bounce to ask what it means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from helpdesk.mailtokens import base_address
from helpdesk.subjects import strip_reply_prefixes
from mailgate import _bounces
from mailgate.parse import Inbound

Kind = Literal["mail", "auto_reply", "bounce", "list", "loop"]

_DAEMON = re.compile(r"^(?:mailer[-_]?daemon|mail[-_]?daemon|post_?master|mdaemon)$", re.I)
_DAEMON_IN_HEADER = re.compile(r"\b(?:mailer-daemon|postmaster)\b|<>", re.I)
_MACHINE_LOCAL = re.compile(
    r"(?:mail[-._]?delivery|delivery[-._]?system|mail[-._]?system|mailadm|sysadmin|"
    r"antivirus|no[-._]?reply|bounce)",
    re.I,
)
_CHALLENGE_DOMAINS = ("boxbe.com", "bluebottle.com", "spamarrest.com", "mailblocks.com")
_TAG = r"^\W*(?:\[[^\]]{0,40}\]\s*)?"
_BOUNCE_SUBJECT = re.compile(
    _TAG + r"(?:undeliver(?:ed|able)\b|returned\s+mail\b|failure\s+notice\b"
    r"|delivery\s+status\s+notification|delivery\s+notification:\s+delivery\s+has\s+failed"
    r"|(?:e-?mail|mail|message)\s+delivery\s+(?:failed|failure|has\s+failed|problem|warning)"
    r"|non[-\s]?deliver|nondeliverable|mail\s+system\s+error|delayed\s+mail\b"
    r"|(?:mail|message)\s+(?:not\s+delivered|could\s+not\s+be\s+delivered)"
    r"|warning:\s+(?:could\s+not\s+send|message\s+has\s+not\s+yet\s+been\s+delivered)"
    r"|permanent\s+delivery\s+failure|delivery\s+report\s+\(failure\)"
    r"|(?:sorry,\s+)?your\s+message\s+(?:to\s+\S+\s+)?could\s+not\s+be\s+delivered"
    r"|email\s+bounce\s+notification|postmaster\s+notify|message\s+status\s+-\s+undeliverable"
    r"|unzustellbar|nicht\s+zustellbar|недоставленное\s+сообщение|メールエラー通知)"
    r"|не\s+доставлено",
    re.I,
)
_WEAK_BOUNCE_SUBJECT = re.compile(
    r"delivery\s+(?:failure|failed|problem|status|report|notification|warning)"
    r"|mail\s+error|not\s+delivered|could\s+not\s+be\s+delivered|failure\s+delivery"
    r"|error\s+sending\s+your\s+mail|non\s+remis|returned\s+to\s+sender|message\s+delayed",
    re.I,
)
_BOUNCE_TEXT = re.compile(
    r"could\s+not\s+be\s+delivered|following\s+address(?:es|\(es\))?\s+failed"
    r"|permanent\s+fatal\s+errors?|this\s+is\s+the\s+mail\s+system\s+at"
    r"|delivery\s+to\s+the\s+following\s+recipients?\s+failed|unable\s+to\s+deliver"
    r"|user\s+unknown|mailbox\s+(?:unavailable|is\s+full|full)|no\s+such\s+user",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    _TAG + r"(?:auto(?:matic)?[-\s]?(?:reply|response|respons|antwort)\b|autoreply|auto:"
    r"|auto[-\s]?generated\b|abwesenheit|r[ée]ponse\s+automatique"
    r"|out\s+of\s+(?:the\s+)?office(?:\s*(?:$|[:(\-–]|until\b|reply\b|auto))"
    r"|respuesta\s+autom[áa]tica|risposta\s+automatica|automatisch\s+antwoord"
    r"|automatyczna\s+odpowied|i\s+am\s+(?:currently\s+)?out\s+of\s+(?:the\s+)?office"
    r"|away\s+from\s+(?:the|my)\s+(?:office|desk|e-?mail)"
    r"|(?:on\s+)?vacation(?:\s+(?:auto)?(?:reply|response|notice|message))?\s*(?::|$))"
    r"|\((?:automatic|auto)\s+(?:response|reply)\)",
    re.I,
)
_RECIPIENT_FIELD = re.compile(r"^(final|original)-recipient:\s*(?:[^;\s]+;)?\s*(.+)$", re.I)
_ANGLE_COLON = re.compile(r"^[ \t]*<([^<>\s]+@[^<>\s]+)>:?", re.M)
_ADDRESS_LINE = re.compile(r"^[ \t]+<?([^<>\s:;]+@[^<>\s:;]+?)>?:?[ \t]*$", re.M)
_DELIVERED_TO = re.compile(
    r"(?:could\s+not\s+be\s+delivered\s+to|delivery\s+to|your\s+message\s+to)\s*:?\s*"
    r"<?([^<>\s:;,]+@[^<>\s:;,]+)",
    re.I,
)
_ORIGINAL_FOLLOWS = re.compile(
    r"^(?:-+\s*(?:original|returned|below|this\s+is\s+a\s+copy)|original\s+message|"
    r"return-path:|received:)",
    re.I | re.M,
)
_DELAY = re.compile(r"delay|warning|not\s+yet|retried|retrying", re.I)
_SYSTEM_LOCAL = re.compile(
    r"^(?:admin(?:istrator)?|root|system|listserv|listserver|listproc|majordomo|mailman"
    r"|sympa|ezmlm|lyris|smtp|mta|exchange(?:admin)?|.+[-_.](?:owner|request|bounces?|errors?))$",
    re.I,
)
_SYSTEM_NAME = re.compile(
    r"\b(?:system\s+administrator|administrator|mail\s+(?:delivery|system|server|administrator)"
    r"|delivery\s+(?:system|subsystem|service)|post\s?master|mailer[-\s]?daemon"
    r"|list\s?serv(?:er)?|list\s+(?:server|processor|manager)|majordomo|mailman|sympa)\b",
    re.I,
)
_LOOP_TEXT = re.compile(
    r"(?:mail|message)\s+loop|loop\s+detected|(?:is|was)\s+looping|looping\s+(?:mail|message)"
    r"|too\s+many\s+hops|hop\s+count\s+exceeded|too\s+many\s+\"?received\"?\s+(?:headers|lines)",
    re.I,
)
_ADDRESSED_TO = re.compile(r"addressed\s+to\s*:?\s*<?([^<>\s:;,()\"']+@[^<>\s:;,()\"']+)", re.I)
_SPLIT = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class Classification:
    """What an inbound mail is, why we think so, and what that means for the pipeline.

    ``suppress_autoresponse`` is True for every automatic kind, and also for mail that is
    still made a ticket but must never be answered automatically (list mail when lists are
    not ignored, mail flagged as spam).
    """

    kind: Kind
    reason: str  # human readable, e.g. "Auto-Submitted: auto-replied"
    bounced_recipients: tuple[str, ...] = ()  # lowercased final recipients named by a bounce
    suppress_autoresponse: bool = False

    def __post_init__(self) -> None:
        if self.kind != "mail" and not self.suppress_autoresponse:
            object.__setattr__(self, "suppress_autoresponse", True)

    @property
    def is_automatic(self) -> bool:
        """True for everything except mail written by a person."""
        return self.kind != "mail"

    @property
    def makes_ticket(self) -> bool:
        """True only for ``mail``: the other kinds are recorded as ignored."""
        return self.kind == "mail"


def classify(msg: Inbound, *, instance_id: str, ignore_lists: bool = True,
             own_addresses: frozenset[str] = frozenset(),
             mime: Message | None = None) -> Classification:
    """Classify one parsed mail; a pure function of ``msg`` and the settings given.

    Args:
        msg: The parsed mail.
        mime: The same mail as the stdlib parsed it, for flufl.bounce's detectors that
            read MIME layout; without it they read ``msg``'s headers and text (see
            `might_be_bounce` for when the gateway passes it).
        instance_id: This help desk's ``X-Helpdesk-Loop`` value.
        ignore_lists: When False, list mail is kind ``mail`` (a ticket) but still never
            answered automatically.
        own_addresses: Our own addresses, lowercase without plus-tags
            (``Settings.own_addresses``).

    Returns:
        The first matching rule's verdict, in the order of the module docstring.
    """
    headers = msg.headers
    loop = headers.get("x-helpdesk-loop", "")
    if instance_id and instance_id in _SPLIT.split(loop):
        return Classification("loop", f"X-Helpdesk-Loop: {instance_id}")
    sender = msg.sender.email.lower() if msg.sender else ""
    if sender and base_address(sender) in own_addresses:
        return Classification("loop", f"from our own address {sender}")
    reason = _challenge_reason(msg)
    if reason:
        return Classification("auto_reply", reason)
    reason = _bounce_reason(msg)
    if reason:
        return Classification("bounce", reason, bounced_recipients(msg))
    if might_be_bounce(msg):
        verdict = _detected_bounce(msg, mime)
        if verdict is not None:
            return verdict
    reason = _auto_reply_reason(msg)
    if reason:
        return Classification("auto_reply", reason)
    reason = _list_reason(msg)
    if reason:
        if ignore_lists:
            return Classification("list", reason)
        return Classification("mail", reason, suppress_autoresponse=True)
    spam = headers.get("x-spam-flag", "").lower()
    if spam.startswith("yes") or headers.get("x-spam-status", "").lower().startswith("yes"):
        return Classification("mail", "flagged as spam", suppress_autoresponse=True)
    return Classification("mail", "written by a person")


def _sender_local(msg: Inbound) -> str:
    return msg.sender.email.rpartition("@")[0] if msg.sender else ""


def _is_null(value: str) -> bool:
    return value.replace(" ", "") == "<>"


def _has_returned_message(msg: Inbound) -> bool:
    return any(t in ("message/rfc822", "text/rfc822-headers") for t in msg.part_types[1:])


def _challenge_reason(msg: Inbound) -> str | None:
    if "x-bluebottle-request" in msg.headers:
        return "challenge-response: X-Bluebottle-Request"
    domain = msg.sender.email.rpartition("@")[2] if msg.sender else ""
    if any(domain == d or domain.endswith("." + d) for d in _CHALLENGE_DOMAINS):
        return f"challenge-response: sender {domain}"
    return None


def _bounce_reason(msg: Inbound) -> str | None:
    headers = msg.headers
    report = re.search(r"report-type\s*=\s*\"?([\w-]+)", headers.get("content-type", ""), re.I)
    report_type = report.group(1).lower() if report else ""
    if msg.content_type == "multipart/report" and report_type in (
        "delivery-status", "feedback-report"
    ):
        return f"multipart/report; report-type={report_type}"
    report_parts = ("delivery-status", "feedback-report")
    part = next((t for t in msg.part_types if t.endswith(report_parts)), None)
    if part:
        return f"contains a {part} part"
    local = _sender_local(msg)
    if _DAEMON.match(local):
        return f"sender is {local}"
    if msg.sender is None and _DAEMON_IN_HEADER.search(headers.get("from", "")):
        return f"empty or daemon sender: {headers['from'][:80]}"
    if _BOUNCE_SUBJECT.search(msg.subject):
        return f"bounce subject: {msg.subject[:80]}"
    machine = (
        headers.get("auto-submitted", "no").lower().split(";")[0].strip() != "no"
        or _is_null(headers.get("return-path", "x"))
        or bool(_MACHINE_LOCAL.search(local))
        or _has_returned_message(msg)
    )
    if machine and _WEAK_BOUNCE_SUBJECT.search(msg.subject):
        return f"bounce subject from a machine: {msg.subject[:80]}"
    if _has_returned_message(msg) and _BOUNCE_TEXT.search(_before_original(msg.text)):
        return "bounce text with the returned message"
    return None


def might_be_bounce(msg: Inbound) -> bool:
    """Whether the mail looks machine-made enough to ask the bounce detectors about it.

    Cheap (headers only); the gateway re-reads the raw mail for `classify`'s ``mime`` only
    when this holds.
    """
    headers = msg.headers
    local = _sender_local(msg)
    name = msg.sender.name if msg.sender else headers.get("from", "")
    return bool(
        msg.sender is None
        or _SYSTEM_LOCAL.match(local) or _MACHINE_LOCAL.search(local) or _DAEMON.match(local)
        or _SYSTEM_NAME.search(name)
        or headers.get("auto-submitted", "no").lower().split(";")[0].strip() != "no"
        or _is_null(headers.get("return-path", "x"))
        or _has_returned_message(msg)
    )


def _detected_bounce(msg: Inbound, mime: Message | None) -> Classification | None:
    """A bounce flufl.bounce recognises, or a mail-loop alert, from machine-made mail.

    Not for a forward or a reply (``Fwd:``, ``Re:`` ...): that is a person, perhaps an
    ``admin@`` of a small company, asking about a bounce they got. A loop alert must
    also return the looping message (attached, or quoted from its headers on).
    """
    if strip_reply_prefixes(msg.subject) != msg.subject.strip():  # a person asking about it
        return None
    permanent, reported = _bounces.failures(msg, mime)
    if reported:
        found = _skip_own(msg, sorted(permanent))
        return Classification("bounce", "bounce recognised by flufl.bounce", found)
    own = _before_original(msg.text)
    returned = _has_returned_message(msg) or len(own) < len(msg.text[:20000])
    if returned and (_LOOP_TEXT.search(msg.subject) or _LOOP_TEXT.search(own[:4000])):
        found = _skip_own(msg, [*_ADDRESSED_TO.findall(own[:4000]),
                                *bounced_recipients(msg)])
        return Classification("bounce", f"mail loop alert: {msg.subject[:80]}", found)
    return None


def _auto_reply_reason(msg: Inbound) -> str | None:
    headers = msg.headers
    auto = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("x-autoreply", "x-autorespond"):
        if headers.get(name):
            return f"{name}: {headers[name][:40]}"
    suppress = {t.lower() for t in _SPLIT.split(headers.get("x-auto-response-suppress", ""))}
    if suppress & {"all", "oof", "autoreply"}:
        return f"X-Auto-Response-Suppress: {headers['x-auto-response-suppress'][:40]}"
    if headers.get("precedence", "").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    if headers.get("x-autogenerated", "").strip().lower() == "reply":
        return "X-Autogenerated: Reply"
    if "disposition-notification" in headers.get("content-type", "").lower():
        return "read receipt (disposition notification)"
    if _AUTO_SUBJECT.search(msg.subject):
        return f"auto-reply subject: {msg.subject[:80]}"
    if "return-path" in headers and _is_null(headers["return-path"]):
        return "null Return-Path"
    return None


def _list_reason(msg: Inbound) -> str | None:
    headers = msg.headers
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in ("list-id", "list-unsubscribe", "list-post", "mailing-list"):
        if name in headers:
            return f"{name}: {headers[name][:80]}"
    return None


def _before_original(text: str) -> str:
    """The bounce's own words: text up to where the returned original message starts."""
    text = text[:20000]
    match = _ORIGINAL_FOLLOWS.search(text)
    return text[: match.start()] if match else text


def bounced_recipients(msg: Inbound) -> tuple[str, ...]:
    """Final recipients a bounce reports as failed, lowercased; best effort without a DSN.

    A delivery-status report names them in ``Final-Recipient`` (else ``Original-Recipient``)
    fields; recipients whose ``Action`` is delayed, delivered, relayed or expanded did not
    fail. Non-standard bounces are searched for the common MTA phrasings.
    """
    found: list[str] = []
    for block in re.split(r"\n\s*\n", msg.delivery_status):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            match = _RECIPIENT_FIELD.match(line.strip())
            if match:
                fields.setdefault(match.group(1).lower(), match.group(2))
            elif line.lower().startswith("action:"):
                fields["action"] = line.split(":", 1)[1].strip().lower()
        address = fields.get("final") or fields.get("original")
        if address and fields.get("action", "failed") not in (
            "delayed", "delivered", "relayed", "expanded"
        ):
            found.append(address)
    if not found and not msg.delivery_status and not _DELAY.search(msg.subject):
        own = _before_original(msg.text)
        for pattern in (_ANGLE_COLON, _DELIVERED_TO, _ADDRESS_LINE):
            found.extend(pattern.findall(own))
    return _skip_own(msg, found)


def _skip_own(msg: Inbound, found: Iterable[str]) -> tuple[str, ...]:
    """``found`` cleaned and lowercased, without the bounce's own sender and recipients."""
    skip = {a.email for a in (*msg.to, *msg.cc)} | {msg.sender.email if msg.sender else ""}
    skip |= {msg.headers.get(h, "").strip("<> ").lower() for h in ("delivered-to", "x-original-to")}
    out = []
    for raw in found:
        address = raw.strip().strip("<>\"'").strip().rstrip(".").lower()
        local = address.rpartition("@")[0]
        if "@" in address and address not in skip and not _DAEMON.match(local):
            out.append(address)
    return tuple(dict.fromkeys(out))
