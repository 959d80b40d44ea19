"""Signed portal links (itsdangerous): view, rate, download and my-tickets tokens.

A requester never logs in; every portal page is reached through a link we mailed. The
token in the link is what authorises the request, so this module is the portal's whole
access control and follows a few rules:

- **Signed, not encrypted.** Tokens are itsdangerous ``URLSafeTimedSerializer`` strings
  (HMAC-SHA256). The ticket and contact ids inside are readable by the holder; nothing
  secret is put in them.
- **One salt per purpose.** A view token is not a rating token: each :class:`Purpose` signs
  with its own salt (:data:`SALTS`), so a token checked for another purpose fails as
  forged (:class:`BadLink`).
- **Expiry per purpose.** Each purpose has a maximum age (view: configured, rating: 14 days
  by default). An expired link raises :class:`LinkExpired`, which keeps ``date_signed``
  and the verified claims so the portal can offer to mail a fresh link.
- **Revocable per ticket.** Each ticket has a random link secret (stored with the ticket,
  e.g. ``secrets.token_urlsafe(16)``). A token carries a short HMAC digest of it, never
  the secret itself; verification recomputes the digest from the ticket's *current*
  secret, so rotating that secret revokes every link to the ticket at once
  (:class:`LinkRevoked`).
- **Key rotation.** ``secret_keys`` is a list, newest last: tokens are signed with the
  newest key and accepted under any key in the list. Drop a key to retire its tokens.

HTTP mapping (``http_status`` on each error, rendered once by the portal's error handler):
:class:`BadLink` 403; :class:`LinkExpired` 410; :class:`LinkRevoked` 410, because the link
did exist and was withdrawn on purpose; unlike an expired link, the portal must not offer
a fresh one for it.

Rating links carry no score: one ``rate`` token per mail, and :func:`rate_url` adds the
score as a query parameter (``/csat/{token}?score=4``). The score is the requester's own
input, not something to authorise, so signing five variants would buy nothing. Mail
scanners fetch links, so the portal should treat ``GET /csat/...`` as a pre-filled form
and record the rating on ``POST``, or make a repeated rating overwrite the first.

Time is read only through the injected clock (or the explicit ``now`` of
:meth:`LinkSigner.verify`), so expiry is tested without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from helpdesk.errors import DomainError
from helpdesk.history import Change

if TYPE_CHECKING:
    from helpdesk.config import Settings

Clock = Callable[[], datetime]
"""Returns the current instant, timezone-aware."""

TicketSecretLookup = Callable[[int], str | None]
"""Returns a ticket's current link secret, or None when the ticket does not exist."""


class Purpose(StrEnum):
    """What a link lets its holder do; each purpose signs with its own salt."""

    VIEW = "view"
    RATE = "rate"
    DOWNLOAD = "download"
    MY_TICKETS = "my-tickets"


SALTS: Mapping[Purpose, str] = MappingProxyType(
    {purpose: f"helpdesk.portal-link.{purpose.value}" for purpose in Purpose}
)
"""The itsdangerous salt of each purpose. Changing one invalidates every link of it."""

CSAT_SCORES = range(1, 6)
"""Scores a rating link accepts: 1 (worst) to 5 (best)."""

MAX_TOKEN_LENGTH = 2048
"""Longer input is refused before any decoding; our tokens are far shorter."""

CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a token's signing time may lie (clocks of our hosts differ)."""

LINKS_REVOKED = Change.LINKS_REVOKED
"""The audit action of a link-secret rotation; its time tells which links it withdrew."""

MAX_ID = 2**31 - 1
"""The largest database id: our integer keys are 32-bit on PostgreSQL. An id beyond it
names nothing, and a query with it would fail in the driver, so it is refused first."""

_DIGEST_BYTES = 9  # 72 bits: enough to tell one ticket secret from the next


def system_clock() -> datetime:
    """The wall clock in UTC: the default :data:`Clock`, and the only place time is read."""
    return datetime.now(UTC)


class LinkError(DomainError):
    """Raised when a portal link cannot be honoured.

    ``str(error)`` is a message safe to show the holder; ``reason`` says why, for the log.
    """

    http_status = 403
    public_message = "This link is not valid."

    def __init__(self, reason: str) -> None:
        super().__init__(self.public_message)
        self.reason = reason


class BadLink(LinkError):
    """Raised when a token is malformed, forged, tampered with, for another purpose or
    another ticket, or names a ticket that no longer exists (HTTP 403)."""


class LinkExpired(LinkError):
    """Raised when a genuine, unrevoked token is older than its purpose allows (HTTP 410).

    Attributes:
        date_signed: when the token was signed (aware UTC).
        payload: the verified claims, so the portal can offer to mail a fresh link to
            ``payload.contact`` for ``payload.ticket``.
    """

    http_status = 410
    public_message = "This link has expired."

    def __init__(self, reason: str, *, date_signed: datetime, payload: LinkClaims) -> None:
        super().__init__(reason)
        self.date_signed = date_signed
        self.payload = payload


class LinkRevoked(LinkError):
    """Raised when the ticket's link secret was rotated after the token was made (HTTP 410).

    Checked before expiry: a revoked link is never answered with a fresh-link offer.
    """

    http_status = 410
    public_message = "This link is no longer valid."


@dataclass(frozen=True)
class LinkClaims:
    """What a verified token says: who may do what on which ticket.

    Attributes:
        purpose: the purpose the token was signed and verified for.
        ticket: the ticket's database id.
        contact: the contact's database id (the requester the link was mailed to).
        extra: purpose-specific signed values, e.g. ``{"attachment": 17}`` for downloads.
    """

    purpose: Purpose
    ticket: int
    contact: int
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner that stamps tokens with the injected clock, not time.time()."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(_aware(self._clock()).timestamp())


class LinkSigner:
    """Makes and checks portal tokens for every purpose under one list of keys.

    Args:
        secret_keys: the signing keys, newest last (``[portal] secret_key``); a single
            string is one key. Tokens are signed with the last and accepted under any.
        view_max_age: lifetime of view links (``[portal] view_link_days``).
        rate_max_age: lifetime of rating links.
        download_max_age: lifetime of attachment links; the view lifetime when None.
        my_tickets_max_age: lifetime of "all my tickets" links.
        clock: the time source for signing, and for verifying when no ``now`` is given.

    Raises:
        ValueError: no key, an empty key, or a lifetime that is not positive.
    """

    def __init__(
        self,
        secret_keys: str | Sequence[str],
        *,
        view_max_age: timedelta,
        rate_max_age: timedelta = timedelta(days=14),
        download_max_age: timedelta | None = None,
        my_tickets_max_age: timedelta = timedelta(hours=24),
        clock: Clock = system_clock,
    ) -> None:
        keys = [secret_keys] if isinstance(secret_keys, str) else list(secret_keys)
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ValueError("secret_keys needs at least one non-empty key")
        self._max_ages: dict[Purpose, timedelta] = {
            Purpose.VIEW: view_max_age,
            Purpose.RATE: rate_max_age,
            Purpose.DOWNLOAD: view_max_age if download_max_age is None else download_max_age,
            Purpose.MY_TICKETS: my_tickets_max_age,
        }
        for purpose, age in self._max_ages.items():
            if age <= timedelta(0):
                raise ValueError(f"max age for {purpose.value!r} links must be positive")
        self._clock = clock
        self._serializers = {
            purpose: URLSafeTimedSerializer(
                keys,
                salt=salt,
                signer=_ClockedSigner,
                signer_kwargs={"clock": clock, "digest_method": hashlib.sha256},
            )
            for purpose, salt in SALTS.items()
        }

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = system_clock) -> LinkSigner:
        """The signer of this installation: ``[portal]`` keys and link lifetimes.

        Every process builds it here (the composer mints links, the portal checks them),
        so a link one makes, the other accepts.
        """
        portal = settings.portal
        return cls(portal.secret_key, view_max_age=timedelta(days=portal.view_link_days),
                   rate_max_age=timedelta(days=portal.rating_link_days), clock=clock)

    def max_age(self, purpose: Purpose | str) -> timedelta:
        """How long a link of this purpose stays valid (for "valid for N days" in mail)."""
        return self._max_ages[Purpose(purpose)]

    def sign(
        self,
        purpose: Purpose | str,
        ticket: int,
        contact: int,
        ticket_secret: str,
        **extra: Any,
    ) -> str:
        """Make a token letting ``contact`` use ``ticket`` for ``purpose``.

        Args:
            purpose: a :class:`Purpose` or its value.
            ticket: the ticket's id.
            contact: the id of the contact the link is for.
            ticket_secret: the ticket's current link secret; only a digest of it is embedded.
            **extra: JSON-serialisable values signed with the token (``attachment=17``).

        Returns:
            A URL-safe token, to be placed with :func:`view_url`, :func:`rate_url` or a route.

        Raises:
            ValueError: unknown purpose, an id that is not in 1..MAX_ID, an empty secret.
            TypeError: an ``extra`` value that JSON cannot encode.
        """
        kind = Purpose(purpose)
        for name, value in (("ticket", ticket), ("contact", contact)):
            if not is_id(value):
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if not ticket_secret:
            raise ValueError("ticket_secret must not be empty")
        payload: list[Any] = [ticket, contact, _secret_digest(ticket, ticket_secret)]
        if extra:
            payload.append(extra)
        return self._serializers[kind].dumps(payload)

    def verify(
        self,
        token: str,
        purpose: Purpose | str,
        *,
        ticket_secret_for: TicketSecretLookup,
        expected_ticket: int | None = None,
        now: datetime | None = None,
    ) -> LinkClaims:
        """Check a token and return what it grants.

        Checks run in this order: signature and purpose (salt), payload shape, the
        expected ticket, the ticket's existence and current secret, then age.

        Args:
            token: the token from the URL, untrusted.
            purpose: what the request wants to do; a token of another purpose is refused.
            ticket_secret_for: looks up a ticket's current link secret; None if it is gone.
            expected_ticket: when the URL names a ticket too, the id it must match.
            now: the instant to check expiry against; the signer's clock when None.

        Returns:
            The verified claims.

        Raises:
            BadLink: malformed, forged, tampered, wrong purpose, wrong or missing ticket.
            LinkRevoked: the ticket's link secret changed since the token was signed.
            LinkExpired: the token is older than the purpose's maximum age.
            ValueError: unknown purpose (a programming error, not a bad link).
        """
        kind = Purpose(purpose)
        if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
            raise BadLink("token is not a short ASCII string")
        try:
            raw, date_signed = self._serializers[kind].loads(token, return_timestamp=True)
        except BadData as exc:
            reason = f"signature check failed for {kind.value}: {type(exc).__name__}"
            raise BadLink(reason) from None
        except (ValueError, OverflowError, OSError, RecursionError) as exc:
            # A genuine signature over a timestamp past year 9999, or a payload nested
            # too deep for the JSON decoder: nothing we ever sign.
            raise BadLink(f"token does not decode: {type(exc).__name__}") from None
        claims, digest = _decode_payload(kind, raw)
        if expected_ticket is not None and claims.ticket != expected_ticket:
            raise BadLink(f"token is for ticket {claims.ticket}, not {expected_ticket}")
        current = ticket_secret_for(claims.ticket)
        if current is None:
            raise BadLink(f"ticket {claims.ticket} does not exist")
        if not hmac.compare_digest(digest, _secret_digest(claims.ticket, current)):
            raise LinkRevoked(f"link secret of ticket {claims.ticket} was rotated")
        instant = _aware(self._clock() if now is None else now)
        age = instant - date_signed
        if age < -CLOCK_SKEW:
            raise BadLink(f"token signed in the future ({date_signed.isoformat()})")
        if age > self._max_ages[kind]:
            raise LinkExpired(
                f"{kind.value} link signed {date_signed.isoformat()} is older than "
                f"{self._max_ages[kind]}",
                date_signed=date_signed,
                payload=claims,
            )
        return claims


def view_url(base_url: str, token: str) -> str:
    """The link to view and reply to a ticket: ``{base_url}/t/{token}``."""
    return f"{base_url.rstrip('/')}/t/{token}"


def rate_url(base_url: str, token: str, score: int | None = None) -> str:
    """The link to rate a ticket: ``{base_url}/csat/{token}``, ``?score=N`` for one click.

    Args:
        base_url: the portal's public base URL, with or without a trailing slash.
        token: a ``rate`` token from :meth:`LinkSigner.sign`.
        score: a score in :data:`CSAT_SCORES` to pre-select, or None for the rating page.

    Raises:
        ValueError: a score outside :data:`CSAT_SCORES`.
    """
    url = f"{base_url.rstrip('/')}/csat/{token}"
    if score is None:
        return url
    if isinstance(score, bool) or score not in CSAT_SCORES:
        raise ValueError(f"score must be one of {list(CSAT_SCORES)}, not {score!r}")
    return f"{url}?{urlencode({'score': score})}"


def _secret_digest(ticket: int, ticket_secret: str) -> str:
    """A short keyed digest of the ticket's link secret; the secret cannot be read back."""
    mac = hmac.new(
        ticket_secret.encode("utf-8"), f"helpdesk.link-secret:{ticket}".encode(), hashlib.sha256
    )
    return base64.urlsafe_b64encode(mac.digest()[:_DIGEST_BYTES]).decode("ascii")


def _decode_payload(purpose: Purpose, raw: Any) -> tuple[LinkClaims, str]:
    """Turn a verified payload into claims and the embedded secret digest, or BadLink."""
    if not isinstance(raw, list) or len(raw) not in (3, 4):
        raise BadLink("payload is not [ticket, contact, digest(, extra)]")
    ticket, contact, digest, *rest = raw
    extra = rest[0] if rest else {}
    if not (is_id(ticket) and is_id(contact) and isinstance(digest, str)):
        raise BadLink("payload ids or digest have the wrong type")
    if not isinstance(extra, dict) or not all(isinstance(key, str) for key in extra):
        raise BadLink("payload extra is not an object")
    claims = LinkClaims(purpose, ticket, contact, MappingProxyType(extra))
    return claims, digest


def is_id(value: Any) -> bool:
    """Whether ``value`` can be a database id: an int in 1..:data:`MAX_ID`, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("clock and now must give timezone-aware datetimes")
    return instant
