"""The desk's ticket statuses, kept in the database so the admin can change them live.

Tickets hold their status by name. Each status is in one of four classes (active,
paused, resolved, closed), and the code reasons only about classes: the SLA clock runs
in active statuses and stops in paused ones, a requester's reply reopens a paused or
resolved ticket into the first status, ``#close`` takes the first closed one. So an
admin may add, rename, recolour, reorder and remove statuses freely within three rules
(`check`): the first status is active (new and reopened tickets start there), and at
least one resolved and one closed status remain.

The configured ``[[tickets.statuses]]`` fill a new database (migration 0005); from then
on the table is the truth, and every process reads it at start and on ``helpdesk
reload`` into its `Settings` (`load`), so the rest of the code asks the settings as
before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.config import Settings, StatusClass, StatusSettings, check_color
from helpdesk.errors import ConfigError, DomainError
from helpdesk.models import StatusRow, Ticket

if TYPE_CHECKING:
    from helpdesk.audit import Actor
    from helpdesk.tickets import TicketService

CLASSES: tuple[StatusClass, ...] = ("active", "paused", "resolved", "closed")


class StatusError(DomainError):
    """A change the status rules do not allow; the message says which rule."""


def check(statuses: Sequence[StatusSettings]) -> None:
    """Raise `StatusError` unless ``statuses`` (in order) is a list the desk can run on."""
    names = [s.name.lower() for s in statuses]
    if len(set(names)) != len(names):
        raise StatusError("two statuses have the same name")
    if not statuses or statuses[0].status_class != "active":
        raise StatusError("the first status must be of class active: new and reopened "
                          "tickets start in it")
    for needed in ("resolved", "closed"):
        if not any(s.status_class == needed for s in statuses):
            raise StatusError(f"at least one status of class {needed} must remain")


def find(statuses: Sequence[StatusSettings], name: str) -> StatusSettings | None:
    """The status named ``name`` in any case and spacing ("in_progress" too)."""
    wanted = " ".join(name.replace("_", " ").replace("-", " ").split()).lower()
    for status in statuses:
        if " ".join(status.name.replace("-", " ").split()).lower() == wanted:
            return status
    return None


async def read(session: AsyncSession) -> list[StatusSettings]:
    """The statuses in their order, as the database holds them (empty before 0005)."""
    rows = await session.execute(select(StatusRow).order_by(StatusRow.position, StatusRow.id))
    return [StatusSettings(r.name, r.status_class, r.color)  # type: ignore[arg-type]
            for r in rows.scalars()]


async def stored(session: AsyncSession) -> tuple[StatusSettings, ...]:
    """The database's statuses; none for a database not yet upgraded to 0005."""
    try:
        async with session.begin():
            return tuple(await read(session))
    except DBAPIError:  # no statuses table yet
        return ()


def with_statuses(settings: Settings, statuses: Sequence[StatusSettings]) -> Settings:
    """``settings`` running on ``statuses`` (kept as they are when there are none)."""
    if not statuses:
        return settings
    return dataclasses.replace(settings, tickets=dataclasses.replace(
        settings.tickets, statuses=tuple(statuses)))


async def write(session: AsyncSession, statuses: Sequence[StatusSettings]) -> None:
    """Make the table hold exactly ``statuses``, in this order (after `check`)."""
    check(statuses)
    rows = {r.name.lower(): r for r in (await session.execute(select(StatusRow))).scalars()}
    keep = {s.name.lower() for s in statuses}
    for name, row in rows.items():
        if name not in keep:
            await session.delete(row)
    await session.flush()
    for position, status in enumerate(statuses):
        found = rows.get(status.name.lower())
        if found is None:
            session.add(StatusRow(name=status.name, status_class=status.status_class,
                                  color=status.color, position=position))
        else:
            found.name, found.status_class = status.name, status.status_class
            found.color, found.position = status.color, position
    await session.flush()


# -- the admin's changes (``helpdesk statuses``), each checked before it is written -----


def _color(color: str) -> str:
    try:
        return check_color(color)
    except ConfigError as exc:
        raise StatusError(str(exc)) from None


def _named(statuses: Sequence[StatusSettings], name: str) -> StatusSettings:
    found = find(statuses, name)
    if found is None:
        raise StatusError(f"no status {name!r} (the statuses: "
                          f"{', '.join(s.name for s in statuses)})")
    return found


async def in_use(session: AsyncSession) -> dict[str, int]:
    """How many tickets are in each status, by name."""
    rows = await session.execute(select(Ticket.status, func.count()).group_by(Ticket.status))
    return {str(name): int(n) for name, n in rows.all()}


async def add(session: AsyncSession, name: str, status_class: StatusClass, *,
              color: str = "", before: str | None = None) -> StatusSettings:
    """A new status, last or ``before`` another."""
    current = await read(session)
    name = " ".join(name.split())
    if not name:
        raise StatusError("a status needs a name")
    if find(current, name) is not None:
        raise StatusError(f"there is a status {name!r} already")
    new = StatusSettings(name, status_class, _color(color))
    at = current.index(_named(current, before)) if before else len(current)
    await write(session, [*current[:at], new, *current[at:]])
    return new


async def recolor(session: AsyncSession, name: str, color: str) -> StatusSettings:
    current = await read(session)
    old = _named(current, name)
    new = dataclasses.replace(old, color=_color(color))
    await write(session, [new if s is old else s for s in current])
    return new


async def reorder(session: AsyncSession, names: Sequence[str]) -> list[StatusSettings]:
    """The named statuses first, in this order; the others keep theirs after them."""
    current = await read(session)
    first = [_named(current, n) for n in names]
    order = [*dict.fromkeys(first), *[s for s in current if s not in first]]
    await write(session, order)
    return order


async def rename(service: TicketService, name: str, new_name: str, actor: Actor) -> int:
    """Rename a status and the tickets in it; returns how many tickets it holds.

    The history keeps the name each change was made under; the rename itself is in it.
    """
    session = service.session
    current = await read(session)
    old = _named(current, name)
    new_name = " ".join(new_name.split())
    clash = find(current, new_name)
    if not new_name or (clash is not None and clash is not old):
        raise StatusError(f"cannot rename {old.name!r} to {new_name!r}: "
                          + ("the name is taken" if new_name else "no name given"))
    await write(session, [dataclasses.replace(s, name=new_name) if s is old else s
                          for s in current])
    return await service.rename_status(old.name, new_name, actor)


async def remove(service: TicketService, name: str, actor: Actor, *,
                 move_to: str | None = None) -> int:
    """Remove a status; tickets in it move to ``move_to`` (each a status change, told to
    the listeners like any other). Returns how many moved.

    Raises:
        StatusError: tickets are in it and no ``move_to`` was given, or the rules of
            `check` would break.
    """
    session = service.session
    current = await read(session)
    old = _named(current, name)
    remaining = [s for s in current if s is not old]
    check(remaining)
    count = (await in_use(session)).get(old.name, 0)
    if count and move_to is None:
        raise StatusError(f"{count} ticket(s) are {old.name}: give --move-to STATUS")
    target = _named(remaining, move_to) if move_to is not None else None
    if target is not None and count:
        # the move runs on the old list, where both names are known
        tickets = (await session.execute(
            select(Ticket).where(Ticket.status == old.name))).unique().scalars().all()
        for ticket in tickets:
            await service.set_status(ticket, target.name, actor,
                                     reason=f"status {old.name} removed")
    await write(session, remaining)
    return count


def config_mentions(settings: Settings, name: str) -> list[str]:
    """Where the configuration still names status ``name`` (after a rename): the SLA
    pause list and the automations."""
    low = name.lower()
    found = [f"[sla] policy {p.name!r} pause_statuses" for p in settings.sla.policies
             if low in (s.lower() for s in p.pause_statuses)]
    for automation in settings.automations:
        when = automation.when
        if low in (when.status.lower(), when.from_status.lower(), when.to_status.lower()) or any(
                a.set.get("status", "").lower() == low for a in automation.actions):
            found.append(f"[[automations]] {automation.name!r}")
    return found
