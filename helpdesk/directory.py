"""People: contacts (by email, with their organization by domain) and agents."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from helpdesk.db import CoreRow, insert_or_ignore
from helpdesk.direct import connection, run
from helpdesk.errors import DomainError
from helpdesk.models import Agent, Contact, Organization, OrganizationDomain


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


# Statements built once: every inbound mail runs them, and composing one costs several
# times what executing it does. Inserts run as Core on the session's connection.
_CONTACT_COLUMNS = (Contact.id, Contact.email, Contact.name, Contact.organization_id,
                    Contact.is_undeliverable)
# RETURNING gives the new row in the same statement; nothing comes back when another
# transaction inserted the key first, and then the row is read.
_NEW_ORG = {name: stmt.returning(Organization.id)
            for name, stmt in insert_or_ignore(Organization, "domain").items()}
_NEW_CONTACT = {name: stmt.returning(*_CONTACT_COLUMNS)
                for name, stmt in insert_or_ignore(Contact, "email").items()}
_ORG_ID_BY_DOMAIN = select(func.coalesce(
    select(Organization.id).where(Organization.domain == bindparam("domain"))
    .scalar_subquery(),
    select(OrganizationDomain.organization_id)
    .where(OrganizationDomain.domain == bindparam("domain")).scalar_subquery()))
"""The organization of a mail domain: its own, else one it was added to."""
_CONTACT_BY_EMAIL = select(*_CONTACT_COLUMNS).where(Contact.email == bindparam("email"))
_SET_CONTACT_NAME = update(Contact).where(Contact.id == bindparam("contact")).values(
    name=bindparam("new_name")).returning(*_CONTACT_COLUMNS)
_AGENT_BY_EMAIL = select(Agent).where(Agent.email == bindparam("email"))


async def organization_id_for(conn: AsyncConnection, email: str,
                              freemail: Sequence[str]) -> int | None:
    domain = email_domain(email)
    if not domain or "." not in domain or domain in freemail:
        return None
    org_id = (await run(conn, _ORG_ID_BY_DOMAIN, {"domain": domain})).scalar_one_or_none()
    if org_id is not None:
        return int(org_id)
    org_id = (await run(conn, _NEW_ORG[conn.dialect.name],
                              {"name": domain, "domain": domain})).scalar_one_or_none()
    if org_id is None:
        org_id = (await run(conn, _ORG_ID_BY_DOMAIN, {"domain": domain})).scalar_one()
    return int(org_id)


async def get_or_create_contact(session: AsyncSession, email: str, name: str = "", *,
                                freemail: Sequence[str] = ()) -> Contact:
    """The contact for an address (case-insensitive), created with its organization if new."""
    row = await ensure_contact(await connection(session), email, name, freemail=freemail)
    contact = await session.get(Contact, row.id, populate_existing=True)
    assert contact is not None
    return contact


async def ensure_contact(conn: AsyncConnection, email: str, name: str = "", *,
                         freemail: Sequence[str] = ()) -> CoreRow:
    """The contact row for an address (id, email, name, organization_id, is_undeliverable).

    Created with its organization when new, its display name filled in when it had none.
    Uses INSERT ... ON CONFLICT so that two gateways seeing a new sender at once both
    end up with the same row instead of one of them failing. Core only: the gateway's
    batch writer needs no ORM object, and `get_or_create_contact` loads one from it.
    """
    email = normalise_email(email)
    if not email:
        raise DomainError("a contact needs an email address")
    row = (await run(conn, _CONTACT_BY_EMAIL, {"email": email})).one_or_none()
    if row is not None:
        if name and not row.name:
            row = (await run(conn, _SET_CONTACT_NAME,
                                {"contact": row.id, "new_name": name})).one()
        return row
    org_id = await organization_id_for(conn, email, freemail)
    row = (await run(conn, _NEW_CONTACT[conn.dialect.name], {
        "email": email, "name": name, "organization_id": org_id,
        "role": "member", "is_undeliverable": False, "undeliverable_reason": ""})).one_or_none()
    return row if row is not None else (
        await run(conn, _CONTACT_BY_EMAIL, {"email": email})).one()


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
