"""Organizations: who a requester belongs to (by mail domain) and what their role lets
them see in the portal.

Each organization has its own domain, made when its first sender wrote in, and may be
given more (`add_domain`): senders from any of them belong to it. A contact's role in
it (``member``, ``admin``, ``owner``) decides the portal's reach: owners and admins see
all the organization's tickets, may reopen resolved ones and manage watchers; members
see the tickets they opened or watch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sqlalchemy import func, or_, select, update

from helpdesk.errors import DomainError, NotFoundError
from helpdesk.models import Contact, Organization, OrganizationDomain, Ticket

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from helpdesk.audit import Actor
    from helpdesk.tickets import TicketService

OrgRole = Literal["owner", "admin", "member"]
ORG_ROLES: tuple[OrgRole, ...] = ("owner", "admin", "member")


def normalise_domain(domain: str) -> str:
    domain = domain.strip().lower().lstrip("@")
    if not domain or "." not in domain or any(c.isspace() or c in "@/" for c in domain):
        raise DomainError(f"{domain!r} is not a mail domain (example.com)")
    return domain


async def find(session: AsyncSession, name_or_domain: str) -> Organization:
    """An organization by its name (any case) or any of its domains."""
    wanted = name_or_domain.strip().lower()
    alias = select(OrganizationDomain.organization_id).where(
        OrganizationDomain.domain == wanted.lstrip("@")).scalar_subquery()
    found = (await session.execute(select(Organization).where(or_(
        func.lower(Organization.name) == wanted, Organization.domain == wanted.lstrip("@"),
        Organization.id == alias)).order_by(Organization.id))).scalars().first()
    if found is None:
        raise NotFoundError(f"no organization {name_or_domain!r} (helpdesk orgs list)")
    return found


async def domains(session: AsyncSession, org: Organization) -> list[str]:
    extra = (await session.execute(select(OrganizationDomain.domain).where(
        OrganizationDomain.organization_id == org.id).order_by(
        OrganizationDomain.domain))).scalars()
    return [*([org.domain] if org.domain else []), *extra]


async def add_domain(service: TicketService, org: Organization, domain: str,
                     actor: Actor) -> tuple[int, int]:
    """Make ``domain``'s senders members of ``org``.

    The organization made for that domain on its first mail, if any, is folded in: its
    contacts join ``org`` (as members) and its tickets move there (each a change by the
    ticket service). Returns (contacts, tickets) moved.
    """
    session = service.session
    domain = normalise_domain(domain)
    if domain in await domains(session, org):
        return 0, 0
    taken = (await session.execute(select(OrganizationDomain).where(
        OrganizationDomain.domain == domain))).scalar_one_or_none()
    if taken is not None:
        raise DomainError(f"{domain} already belongs to another organization")
    moved_contacts = moved_tickets = 0
    own = (await session.execute(select(Organization).where(
        Organization.domain == domain))).scalar_one_or_none()
    if own is not None:
        if (await session.execute(select(func.count()).select_from(OrganizationDomain).where(
                OrganizationDomain.organization_id == own.id))).scalar_one():
            raise DomainError(f"{domain} is {own.name}'s own domain and it has others: "
                              "move those first")
        tickets = (await session.execute(select(Ticket).where(
            Ticket.organization_id == own.id))).unique().scalars().all()
        for ticket in tickets:
            moved_tickets += await service.set_organization(ticket, org, actor)
        moved_contacts = int((await session.execute(
            update(Contact).where(Contact.organization_id == own.id)
            .values(organization_id=org.id, role="member")
            .execution_options(synchronize_session="fetch"))).rowcount or 0)  # type: ignore[attr-defined]
        await session.flush()
        await session.delete(own)
        await session.flush()
    session.add(OrganizationDomain(domain=domain, organization_id=org.id))
    await session.flush()
    return moved_contacts, moved_tickets


async def set_role(session: AsyncSession, email: str, role: OrgRole) -> Contact:
    """Give a contact a role in their organization."""
    contact = (await session.execute(select(Contact).where(
        Contact.email == email.strip().lower()))).unique().scalar_one_or_none()
    if contact is None:
        raise NotFoundError(f"no contact {email} (they have not written in yet)")
    if contact.organization_id is None:
        raise DomainError(f"{contact.email} belongs to no organization (a freemail address?): "
                          "add their domain to one first (helpdesk orgs add-domain)")
    contact.role = role
    await session.flush()
    return contact
