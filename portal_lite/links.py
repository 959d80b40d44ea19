"""Signed portal links: re-exported from the core, where the responders can mint them too."""

from helpdesk.links import (
    CSAT_SCORES,
    BadLink,
    LinkClaims,
    LinkError,
    LinkExpired,
    LinkRevoked,
    LinkSigner,
    Purpose,
    rate_url,
    view_url,
)

__all__ = [
    "CSAT_SCORES", "BadLink", "LinkClaims", "LinkError", "LinkExpired", "LinkRevoked",
    "LinkSigner", "Purpose", "rate_url", "view_url",
]
