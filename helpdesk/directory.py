"""People: contacts (by email, with their organization by domain) and agents."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.db import insert_or_ignore
from helpdesk.errors import DomainError
from helpdesk.models import Agent, Contact, Organization


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


# Statements built once: every inbound mail runs them, and composing one costs several
# times what executing it does. Inserts run as Core on the session's connection.
_NEW_ORG = insert_or_ignore(Organization, "domain")
_NEW_CONTACT = insert_or_ignore(Contact, "email")
_ORG_BY_DOMAIN = select(Organization).where(Organization.domain == bindparam("domain"))
_CONTACT_BY_EMAIL = select(Contact).where(Contact.email == bindparam("email"))
_AGENT_BY_EMAIL = select(Agent).where(Agent.email == bindparam("email"))


async def organization_for(session: AsyncSession, email: str,
                           freemail: Sequence[str]) -> Organization | None:
    """The organization of an address's domain, created on first sight; None for freemail."""
    domain = email_domain(email)
    if not domain or "." not in domain or domain in freemail:
        return None
    org = (await session.execute(_ORG_BY_DOMAIN, {"domain": domain})).scalar_one_or_none()
    if org is not None:
        return org
    conn = await session.connection()
    await conn.execute(_NEW_ORG[conn.dialect.name], {"name": domain, "domain": domain})
    return (await session.execute(_ORG_BY_DOMAIN, {"domain": domain})).scalar_one()


async def get_or_create_contact(session: AsyncSession, email: str, name: str = "", *,
                                freemail: Sequence[str] = ()) -> Contact:
    """The contact for an address (case-insensitive), created with its organization if new.

    Uses INSERT ... ON CONFLICT so that two gateways seeing a new sender at once both
    end up with the same row instead of one of them failing.
    """
    email = normalise_email(email)
    if not email:
        raise DomainError("a contact needs an email address")
    contact = (await session.execute(_CONTACT_BY_EMAIL, {"email": email})).scalar_one_or_none()
    if contact is not None:
        if name and not contact.name:
            contact.name = name
        return contact
    org = await organization_for(session, email, freemail)
    conn = await session.connection()
    await conn.execute(_NEW_CONTACT[conn.dialect.name], {
        "email": email, "name": name, "organization_id": org.id if org else None,
        "role": "member", "is_undeliverable": False, "undeliverable_reason": ""})
    return (await session.execute(_CONTACT_BY_EMAIL, {"email": email})).scalar_one()


async def find_agent(session: AsyncSession, email: str) -> Agent | None:
    return (await session.execute(
        _AGENT_BY_EMAIL, {"email": normalise_email(email)})).scalar_one_or_none()


async def find_agent_by_name(session: AsyncSession, name_or_email: str) -> Agent | None:
    """An agent by email, or by name (case-insensitive) when exactly one matches."""
    agent = await find_agent(session, name_or_email)
    if agent is not None:
        return agent
    rows = (await session.execute(
        select(Agent).where(func.lower(Agent.name) == name_or_email.strip().lower())
    )).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def add_agent(session: AsyncSession, email: str, name: str = "") -> Agent:
    """Create an agent, or reactivate and rename an existing one (idempotent)."""
    agent = await find_agent(session, email)
    if agent is None:
        agent = Agent(email=normalise_email(email), name=name, is_active=True)
        session.add(agent)
    else:
        agent.is_active = True
        if name:
            agent.name = name
    await session.flush()
    return agent
