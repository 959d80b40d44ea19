"""Webhook and task rows: an automation's (or ``#task``'s) JSON POST, sent by the workers
like a mail.

The row carries the URL, the automation's name and the payload; the HMAC-SHA256 key is
looked up in the config by the automation's name at send time, so no secret is stored
in the database. The body is signed as sent: ``X-Helpdesk-Signature: sha256=<hex>``
over its exact bytes. ``X-Helpdesk-Delivery`` is the row's Message-ID, the same on every
retry, so a receiver can drop a repeat. A 2xx answer is delivered; 408, 429 and 5xx, a
timeout or a refused connection are temporary (the outbox retries with backoff); any
other answer is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from helpdesk.config import Settings
from helpdesk.outbox import TASK
from responders.compose import OutgoingRow

SIGNATURE = "X-Helpdesk-Signature"
TIMEOUT_SECONDS = 15.0


class WebhookError(Exception):
    """A POST that did not get a 2xx answer; ``permanent`` when retrying cannot help."""

    def __init__(self, reply: str, *, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


def secret_for(settings: Settings, automation: str, url: str) -> str:
    """The ``secret`` of the named automation's webhook action to ``url`` ("" if none)."""
    for candidate in settings.automations:
        if candidate.name == automation:
            for action in candidate.actions:
                if action.webhook.get("url") == url:
                    return action.webhook.get("secret", "")
    return ""


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(settings: Settings, row: OutgoingRow) -> httpx.Response:
    """POST the row's payload; raises `WebhookError` unless the answer is 2xx.

    A ``task`` row (`helpdesk.tasks`) is signed with ``[tasks] secret``; a webhook row
    with its automation's.
    """
    url = str(row.context.get("url", ""))
    body = json.dumps(row.context.get("payload", {}), sort_keys=True,
                      separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "helpdesk-webhook",
               "X-Helpdesk-Delivery": row.message_id,
               "X-Helpdesk-Event": str(row.context.get("payload", {}).get("event", ""))}
    secret = (settings.tasks.secret if row.kind == TASK
              else secret_for(settings, str(row.context.get("automation", "")), url))
    if secret:
        headers[SIGNATURE] = signature(secret, body)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookError(f"{type(exc).__name__}: {exc}", permanent=False) from exc
    if 200 <= response.status_code < 300:
        return response
    temporary = response.status_code in (408, 429) or response.status_code >= 500
    raise WebhookError(f"HTTP {response.status_code}", permanent=not temporary)
