"""Turning a ticket into a task: a signed POST to the task endpoint, through the outbox.

``#task [title]`` and ``helpdesk tickets task`` write an outbox row in the command's
transaction (so a refused or rolled-back mail sends nothing, and a crash loses nothing);
the workers POST it like an automation webhook, retrying with backoff, and record the
URL the endpoint answers with as the ticket's ``task`` link (`record_task`), by the one
writer like every other link.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from helpdesk import outbox
from helpdesk.audit import Actor
from helpdesk.errors import DomainError

if TYPE_CHECKING:
    from helpdesk.models import Ticket
    from helpdesk.runtime import Runtime
    from helpdesk.tickets import TicketService

TASK_ACTOR = Actor("system", "task")


class NoTaskEndpoint(DomainError):
    """``[tasks] endpoint`` is not set: there is nowhere to create the task."""


def task_payload(service: TicketService, ticket: Ticket, title: str, *,
                 requested_by: str) -> dict[str, Any]:
    """The JSON the endpoint gets: the ticket as a task tracker needs it."""
    return {
        "event": "task_requested", "title": title or ticket.subject,
        "requested_by": requested_by,
        "ticket": {"reference": service.reference(ticket), "number": ticket.number,
                   "subject": ticket.subject, "status": ticket.status,
                   "priority": ticket.priority, "category": ticket.category,
                   "type": ticket.type, "queue": ticket.queue,
                   "requester": ticket.requester.email if ticket.requester else None,
                   "assignee": ticket.assignee.email if ticket.assignee else None},
    }


async def request_task(rt: Runtime, service: TicketService, ticket: Ticket, title: str,
                       actor: Actor) -> None:
    """Queue the POST that creates a task for ``ticket``.

    Raises:
        NoTaskEndpoint: no endpoint is configured; the caller reports it.
    """
    endpoint = rt.settings.tasks.endpoint
    if not endpoint:
        raise NoTaskEndpoint("no task endpoint is configured ([tasks] endpoint in the "
                             "config); ask the admin to set one")
    payload = task_payload(service, ticket, title, requested_by=str(actor))
    await service.tx.outbox(outbox.row_values(
        kind=outbox.TASK, template="", to=["task@invalid"],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=rt.clock(), ticket_id=ticket.id, ticket_number=ticket.number,
        context={"url": endpoint, "payload": payload, "title": payload["title"]}))


def task_url(body: Any, headers: Mapping[str, str]) -> str | None:
    """The task's address in the endpoint's answer: JSON ``url`` (or ``html_url``, as
    GitHub and Gitea answer), else the ``Location`` header (pure)."""
    if isinstance(body, dict):
        for key in ("url", "html_url", "web_url"):
            value = body.get(key)
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                return value
    location = headers.get("location", "")
    return location if location.startswith(("http://", "https://")) else None


async def record_task(rt: Runtime, ticket_id: int, url: str, title: str) -> None:
    """Link the created task to its ticket (once: a repeated answer adds nothing)."""
    from helpdesk.models import Ticket
    from helpdesk.tickets import TicketService

    async with rt.sessions() as session, session.begin():
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            return
        service = TicketService.for_runtime(session, rt)
        await service.link(ticket, "task", TASK_ACTOR, url=url, title=title)
        await service.tx.flush()
