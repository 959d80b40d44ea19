"""What each agent role may do: one table of who may run what, for mail and the CLI.

Roles are ``admin``, ``agent`` and ``light``; ``[permissions]`` gives each its
permissions (``ticket.view``, ``ticket.create``, ``ticket.update``, ``ticket.delete``).
Every action that an agent can take names the permissions it needs here, so the mail
commands and the CLI refuse alike and say why in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable

from helpdesk.config import PermissionSettings
from helpdesk.errors import DomainError

VIEW, CREATE, UPDATE, DELETE = "ticket.view", "ticket.create", "ticket.update", "ticket.delete"

COMMAND_NEEDS: dict[str, tuple[str, ...]] = {
    # reading, and work that changes nothing the requester sees
    "note": (VIEW,), "watch": (VIEW,), "unwatch": (VIEW,), "time": (VIEW,),
    "help": (VIEW,), "away": (VIEW,), "list": (VIEW,), "search": (VIEW,),
    # changing the ticket
    "status": (UPDATE,), "close": (UPDATE,), "reopen": (UPDATE,), "priority": (UPDATE,),
    "category": (UPDATE,), "type": (UPDATE,), "assign": (UPDATE,), "unassign": (UPDATE,),
    "tag": (UPDATE,), "due": (UPDATE,), "link": (UPDATE,), "unlink": (UPDATE,),
    "task": (UPDATE,), "canned": (UPDATE,), "send": (UPDATE,), "discard": (VIEW,),
    # a merge retires the source ticket
    "merge": (UPDATE, DELETE),
}
"""The permissions each mail command needs; a command not listed needs ``ticket.update``."""

PUBLIC_REPLY: tuple[str, ...] = (UPDATE,)
"""What a public reply by mail needs (without it the text is kept as an internal note)."""
NEW_TICKET: tuple[str, ...] = (CREATE,)
"""What opening a ticket by mail needs."""


class Forbidden(DomainError):
    """The agent's role lacks a permission; the message names the role and the permission."""

    exit_code = 77  # EX_NOPERM, for the CLI


def missing(permissions: PermissionSettings, role: str, needs: Iterable[str]) -> list[str]:
    """The permissions of ``needs`` that ``role`` lacks (pure)."""
    return [p for p in needs if not permissions.allows(role, p)]


def require(permissions: PermissionSettings, role: str, needs: Iterable[str], *,
            doing: str) -> None:
    """Raise `Forbidden` unless ``role`` holds every permission in ``needs``."""
    lacking = missing(permissions, role, needs)
    if lacking:
        raise Forbidden(f"your role ({role}) may not {doing}: it lacks "
                        f"{', '.join(lacking)}")


def command_needs(name: str) -> tuple[str, ...]:
    return COMMAND_NEEDS.get(name, (UPDATE,))
