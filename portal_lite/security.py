"""Request guards for the portal: CSRF tokens, the honeypot, rate limits and security headers.

Every portal form is reached through a signed link, so the guards here protect the POSTs
those pages make:

- **CSRF (signed double submit).** A random value lives in an HttpOnly cookie; each form
  carries an HMAC of that value *and* of the form's scope (a digest of the link token, or a
  fixed name for forms without one). A forged cross-site POST cannot read the cookie, and a
  form token taken from one ticket's page is useless on another's.
- **Honeypot.** A field hidden from people by CSS; bots that fill every input fill it too.
- **Rate limits.** In memory, per client IP and per link token, on every POST. They are
  per process: behind several portal processes the effective limit grows with them, which
  is fine for what they are for (stopping one client from hammering a link).
- **Security headers** on every response: a CSP without any script, no framing,
  ``nosniff``, no referrer (our URLs carry tokens), ``no-store`` caching.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "hd_csrf"
CSRF_FIELD = "csrf"
HONEYPOT_FIELD = "website"
MY_SCOPE = "my-tickets-request"
"""The CSRF scope of forms that are not bound to a link token (asking for a magic link)."""


def token_scope(link_token: str) -> str:
    """The CSRF scope of forms on a page reached through ``link_token``."""
    return "link:" + hashlib.sha256(link_token.encode("ascii", "replace")).hexdigest()


class CsrfGuard:
    """Makes and checks double-submit CSRF tokens under the portal's signing keys.

    Args:
        secret_keys: the portal keys, newest last; tokens are made with the newest and
            accepted under any, like the links themselves.
        secure_cookie: set the cookie's ``Secure`` flag (the portal is served over https).
    """

    def __init__(self, secret_keys: Sequence[str], *, secure_cookie: bool = False) -> None:
        if not secret_keys:
            raise ValueError("CsrfGuard needs at least one key")
        self._keys = [
            hashlib.sha256(b"helpdesk.portal-csrf\0" + key.encode()).digest()
            for key in secret_keys
        ]
        self.secure_cookie = secure_cookie

    @staticmethod
    def cookie_value(request: Request) -> str | None:
        """The browser's CSRF cookie, when it has a plausible one."""
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if 16 <= len(value) <= 64 and value.isascii() else None

    @staticmethod
    def new_cookie_value() -> str:
        return secrets.token_urlsafe(24)

    def form_token(self, cookie: str, scope: str) -> str:
        """The value of the hidden ``csrf`` field for a form of ``scope``."""
        return self._mac(self._keys[-1], cookie, scope)

    def is_valid(self, cookie: str | None, submitted: str | None, scope: str) -> bool:
        """Whether a POST's form token matches its cookie and scope under any key."""
        if not cookie or not submitted or not submitted.isascii():
            return False
        return any(
            hmac.compare_digest(submitted, self._mac(key, cookie, scope)) for key in self._keys
        )

    @staticmethod
    def _mac(key: bytes, cookie: str, scope: str) -> str:
        digest = hmac.new(key, f"{cookie}\0{scope}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def honeypot_filled(form: Mapping[str, object]) -> bool:
    """Whether the hidden honeypot field came back with anything in it."""
    value = form.get(HONEYPOT_FIELD)
    return isinstance(value, str) and value.strip() != ""


@dataclass(frozen=True)
class RateLimits:
    """POSTs allowed per sliding window.

    Attributes:
        per_ip: POSTs one client address may make per window, over all forms.
        per_token: POSTs per link token (or per address asked for a magic link).
        window_seconds: the length of the sliding window.
    """

    per_ip: int = 30
    per_token: int = 10
    window_seconds: float = 60.0


class RateLimiter:
    """Sliding-window counters in memory, keyed by any string.

    Args:
        limits: the allowances.
        clock: a monotonic seconds counter (injectable for tests).
    """

    _MAX_KEYS = 100_000

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, limit: int) -> bool:
        """Count one hit on ``key``; False (and not counted) when the window is full."""
        now = self._clock()
        start = now - self.limits.window_seconds
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._MAX_KEYS:
                self._prune(start)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= start:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def allow_post(self, client_ip: str, token_key: str | None) -> bool:
        """Apply the per-IP and (when given) per-token limits to one POST."""
        if not self.allow(f"ip:{client_ip}", self.limits.per_ip):
            return False
        if token_key is None:
            return True
        digest = hashlib.sha256(token_key.encode("utf-8", "replace")).hexdigest()[:32]
        return self.allow(f"tok:{digest}", self.limits.per_token)

    def _prune(self, start: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= start]:
            del self._hits[key]


def client_ip(request: Request) -> str:
    """The client's address as the server saw it (uvicorn applies trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


def content_security_policy(logo_url: str = "") -> str:
    """The portal's CSP: our own styles and images, no script at all, never framed."""
    img = "'self' data:"
    parts = urlsplit(logo_url)
    if parts.scheme in ("http", "https") and parts.netloc:
        img += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
        f"style-src 'self'; img-src {img}; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding the security headers to every HTTP response.

    A header a route set itself (say, a stricter CSP on downloads) is left as it is.
    """

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.headers = {
            "content-security-policy": csp,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cross-origin-opener-policy": "same-origin",
            "cache-control": "no-store",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        is_static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
                if is_static:  # the stylesheet carries no token: let browsers keep it
                    headers["cache-control"] = "public, max-age=3600"
            await send(message)

        await self.app(scope, receive, send_with_headers)
