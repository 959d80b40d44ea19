"""Warnings about a configuration that loads but will misbehave: `helpdesk config check`.

Each check is a pure function of the settings (and, for paths, of nothing but the path's
form), so the daemon logs the same warnings at start-up that the command prints.
"""

from __future__ import annotations

from pathlib import Path

from helpdesk.config import Settings


def admin_loop_reason(settings: Settings) -> str | None:
    """Why mail to ``[instance] admin_email`` would come back to us, or None.

    The admin address is inside a receiving domain (``[smtp] domains`` and, if set,
    ``local_parts``) and is not a configured agent (whose mail the MTA is taken to route
    to a person's mailbox). An MTA that routes by domain hands such a notice back to our
    receiver, which drops it as our own loop: the admin never sees it.
    """
    admin = settings.instance.admin_email.strip().lower()
    if not admin or not settings.smtp.accepts(admin):
        return None
    if admin in {a.email.strip().lower() for a in settings.agents}:
        return None
    return (f"[instance] admin_email {admin} is one of our receiving addresses and not an "
            "agent: routed back to us, admin notices are dropped as our own loop")


def admin_notice_note(settings: Settings, recipients: tuple[str, ...] | list[str]) -> str:
    """The note kept on a sent row addressed only to a looping admin address ("" if none).

    We cannot see where the MTA routes the admin's mail, so the notice is sent, and the
    row says in ``helpdesk outbox list`` that it may never have reached a person.
    """
    admin = settings.instance.admin_email.strip().lower()
    if not recipients or any(r.strip().lower() != admin for r in recipients):
        return ""
    reason = admin_loop_reason(settings)
    return f"sent, but may be lost: {reason}" if reason else ""


def _relative(path: str) -> bool:
    path = path[5:].partition("?")[0] if path.startswith("file:") else path  # SQLite URI
    return bool(path) and path != ":memory:" and not Path(path).is_absolute()


def config_warnings(settings: Settings, *, paths: bool = True) -> list[str]:
    """Every warning for ``settings``, one line each (empty when all is well).

    ``paths``: also warn about relative paths, which matter behind an MTA (its pipe runs
    elsewhere) but not for ``helpdesk run`` started in its own folder.
    """
    warnings = []
    reason = admin_loop_reason(settings)
    if reason:
        warnings.append(f"{reason}; set it to a mailbox outside {list(settings.smtp.domains)},"
                        " list the receiving local parts in [smtp] local_parts, or add it "
                        "as an agent")
    if not paths:
        return warnings
    database = settings.database.sqlite_file
    if database is not None and _relative(str(database)):
        warnings.append(f"[database] url names a relative path ({database}): an MTA "
                        "runs `helpdesk ingest` in its own directory; use an absolute path")
    if _relative(settings.storage.dir):
        warnings.append(f"[storage] dir is relative ({settings.storage.dir}): use an "
                        "absolute path")
    if settings.lmtp.enabled and _relative(settings.lmtp.socket):
        warnings.append(f"[lmtp] socket is relative ({settings.lmtp.socket}): use an "
                        "absolute path")
    return warnings
