"""Queue mail to an agent about their own mail: command errors, help, "not authenticated".

Why a module of its own: these notices go out both when an authenticated agent's mail is
applied (``agent_mail.AgentMail``: errors, ``#help``) and when a mail from an agent's
address could *not* be authenticated and was handled as a contact's (``ingest``), which is
outside what ``agent_mail`` does. Every notice threads onto the agent's mail and carries
the agent's signed reply address.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import outbox
from helpdesk.models import Agent, Ticket
from helpdesk.notify import agent_reply_address
from helpdesk.runtime import Runtime
from mailgate.agent_auth import AuthResult
from mailgate.parse import Inbound

REFUSALS_PER_HOUR = 5
"""At most this many "not authenticated" mails to one agent address per hour."""


async def mail_agent(rt: Runtime, session: AsyncSession, ticket: Ticket, agent: Agent,
                     msg: Inbound, *, kind: str, template: str,
                     context: dict[str, Any]) -> None:
    """Queue one ``kind`` mail to ``agent`` in reply to ``msg``, in the caller's transaction."""
    refs = [msg.message_id] if msg.message_id else []
    await outbox.enqueue(
        session, kind=kind, template=template, to=[agent.email],
        instance_id=rt.settings.instance.id, secret=rt.secrets[-1], domain=rt.mail_domain,
        at=rt.clock(), ticket=ticket, in_reply_to=msg.message_id, references=refs,
        context={"reply_to": agent_reply_address(rt, ticket, agent),
                 "agent_subject": msg.subject, **context})


async def refuse_agent_mail(rt: Runtime, session: AsyncSession, ticket: Ticket, agent: Agent,
                            msg: Inbound, auth: AuthResult, *, handled_as: str) -> bool:
    """Tell the agent why their mail ran no command (rate-limited per address and hour).

    Returns:
        True when the notice was queued, False when the hourly limit was reached.
    """
    now = rt.clock()
    sent = await outbox.count_recent(session, kind="agent_auth_refused", to=agent.email,
                                     since=now - outbox.HOUR)
    if sent >= REFUSALS_PER_HOUR:
        return False
    await mail_agent(rt, session, ticket, agent, msg, kind="agent_auth_refused",
                     template="agent_auth_refused",
                     context={"reason": auth.reason, "handled_as": handled_as})
    return True


async def refuse_unauthenticated(rt: Runtime, session: AsyncSession, agent: Agent,
                                 msg: Inbound, auth: AuthResult, ticket_id: int, *,
                                 disposition: str, reference: str | None) -> bool:
    """After the pipeline handled an unauthenticated agent's mail as a contact's, tell them.

    ``ticket_id``: the ticket the mail ended on (a reply's, or the new ticket's).

    Returns:
        True when a notice was queued.
    """
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        return False
    handled_as = (f"a new ticket, {reference}" if disposition == "ticket"
                  else f"an ordinary reply on {reference}")
    return await refuse_agent_mail(rt, session, ticket, agent, msg, auth, handled_as=handled_as)
