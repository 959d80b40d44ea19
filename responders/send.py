"""Hand one composed message to the configured smarthost over SMTP (aiosmtplib).

The result is a value or one of two exceptions, so the caller decides without parsing
text: :class:`TemporaryFailure` (a 4xx reply, a refused or dropped connection, a timeout:
try again later) or :class:`PermanentFailure` (a 5xx reply: the server will not take this
mail, retrying changes nothing). Both keep the server's answer for the outbox row.

What goes over the wire is :func:`flatten`'s bytes, handed to aiosmtplib as bytes: its
``send_message`` would flatten with ``policy.SMTP``, which refolds (and so re-decodes) any
header line longer than 78 characters. Our generator's policy never refolds, so the header
values the composer built are sent byte for byte. Envelope recipients are the ones the
composer writes into ``To``: addresses :func:`helpdesk.mailheaders.address` accepts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage

import aiosmtplib
import structlog

from helpdesk import mailheaders
from helpdesk.config import OutboundSettings

log = structlog.get_logger("responders.send")


@dataclass(frozen=True)
class Delivered:
    """The smarthost accepted the message for every recipient it did not refuse.

    Attributes:
        reply: the server's final reply line ("250 2.0.0 Ok: queued as ...").
        refused: recipients the server refused while accepting the others, with replies.
    """

    reply: str
    refused: tuple[tuple[str, str], ...] = ()


class DeliveryError(Exception):
    """Raised when the smarthost did not accept the message.

    Attributes:
        code: the SMTP reply code, or None when no reply came (connection trouble).
        reply: the server's answer or a description of the connection problem.
    """

    is_permanent = False

    def __init__(self, reply: str, code: int | None = None) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply


class TemporaryFailure(DeliveryError):
    """Raised for 4xx replies, refused or dropped connections and timeouts: retry later."""


class PermanentFailure(DeliveryError):
    """Raised for 5xx replies: the server refuses this mail for good."""

    is_permanent = True


def _reply_text(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


def _failure(code: int, message: str) -> DeliveryError:
    reply = _reply_text(code, message)
    return PermanentFailure(reply, code) if 500 <= code < 600 else TemporaryFailure(reply, code)


def flatten(message: EmailMessage) -> bytes:
    """The bytes we send for ``message``: CRLF line ends, raw header values as they are."""
    with io.BytesIO() as out:
        BytesGenerator(out, policy=mailheaders.WIRE_POLICY).flatten(message)
        return out.getvalue()


async def deliver(message: EmailMessage, settings: OutboundSettings, *,
                  recipients: Sequence[str], envelope_from: str | None = None) -> Delivered:
    """Send ``message`` to ``recipients`` through the smarthost in ``settings``.

    Args:
        message: the composed message; sent as :func:`flatten` writes it.
        settings: ``[outbound]``: host, port, ``ehlo_name`` (the name we give in EHLO;
            empty: this machine's FQDN), ``tls`` (implicit TLS), ``starttls``,
            ``username``/``password`` (login only when a username is set), timeout.
        recipients: the envelope recipients (RCPT TO).
        envelope_from: the envelope sender (MAIL FROM); ``settings.sender`` when None.

    Returns:
        :class:`Delivered` when at least one recipient was accepted.

    Raises:
        TemporaryFailure: 4xx, connection refused or lost, timeout.
        PermanentFailure: 5xx (for every recipient, when recipients are refused), or no
            recipient is an address we write.
    """
    envelope = [a for a in map(mailheaders.address, recipients) if a]
    if len(envelope) < len(recipients):
        log.warning("outbound.recipients_dropped", dropped=len(recipients) - len(envelope))
    if not envelope:
        raise PermanentFailure("no valid recipient address")
    try:
        refused, reply = await aiosmtplib.send(
            flatten(message),
            sender=envelope_from or settings.sender,
            recipients=envelope,
            hostname=settings.host,
            port=settings.port,
            local_hostname=settings.ehlo_name or None,
            username=settings.username or None,
            password=settings.password or None,
            use_tls=settings.tls,
            start_tls=settings.starttls,
            timeout=settings.timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        errors = [_failure(r.code, f"<{r.recipient}> {r.message}") for r in exc.recipients]
        temporary = [e for e in errors if not e.is_permanent]
        worst = temporary[0] if temporary else errors[0] if errors else None
        if worst is None:
            raise TemporaryFailure("all recipients refused") from exc
        raise worst from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _failure(exc.code, exc.message) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TemporaryFailure(f"connection to {settings.host}:{settings.port} failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    return Delivered(
        reply=str(reply),
        refused=tuple((addr, _reply_text(r.code, r.message)) for addr, r in refused.items()),
    )
