"""Assemble the portal's Starlette app from a runtime: routes, guards, error pages, headers.

Nothing is created at import time; :func:`create_app` builds every piece from its
arguments, so tests and the ``portal`` role each get an app of their own.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware

from helpdesk.links import LinkSigner
from helpdesk.runtime import Runtime
from portal_lite.portal import TEMPLATE_DIR, Portal
from portal_lite.routes import EXCEPTION_HANDLERS, build_routes
from portal_lite.security import (
    CsrfGuard,
    RateLimiter,
    RateLimits,
    SecurityHeadersMiddleware,
    content_security_policy,
)


def create_app(
    rt: Runtime,
    *,
    signer: LinkSigner | None = None,
    limits: RateLimits | None = None,
    template_dir: Path | None = None,
) -> Starlette:
    """The portal app for one runtime.

    Args:
        rt: settings, database, blob store and clock of this process.
        signer: the link signer; by default one built from ``[portal]`` settings with the
            runtime's clock (:meth:`LinkSigner.from_settings`, as the responders build it, so
            their links verify here).
        limits: POST rate limits; :class:`RateLimits` defaults when None.
        template_dir: the portal templates (``templates/portal`` of the project by default);
            it must contain ``static/portal.css``.

    Returns:
        A Starlette app; its :class:`~portal_lite.portal.Portal` is ``app.state.portal``.
    """
    settings = rt.settings.portal
    if signer is None:
        signer = LinkSigner.from_settings(rt.settings, rt.clock)
    folder = template_dir or TEMPLATE_DIR
    portal = Portal(
        rt,
        signer=signer,
        csrf=CsrfGuard(rt.secrets, secure_cookie=settings.base_url.startswith("https://")),
        limiter=RateLimiter(limits or RateLimits()),
        template_dir=folder,
    )
    app = Starlette(
        routes=build_routes(folder / "static"),
        middleware=[Middleware(SecurityHeadersMiddleware,
                               csp=content_security_policy(settings.logo_url))],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.portal = portal
    return app
