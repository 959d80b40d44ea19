"""`helpdesk imap check`: log in to each configured mailbox and report what the poller will see.

For set-up: it proves the credentials, shows whether the folders exist (the poller creates
missing processed and quarantine folders on its first run), how many messages wait, whether
the server offers IDLE and MOVE, and where polling stands in the database. It never
changes a mailbox. Exit 0 when every mailbox answered, 1 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import click

from helpdesk.cli_common import config_option, run_async, settings_of
from helpdesk.config import ImapSettings, Settings

CAPABILITIES = ("IDLE", "MOVE", "UIDPLUS")


@click.group()
@config_option
def imap(config_path: str | None) -> None:
    """Inspect the configured IMAP mailboxes."""


async def check_mailbox(mailbox: ImapSettings, *, timeout: float = 15.0) -> dict[str, Any]:
    """Log in to one mailbox and describe it; failures are reported, not raised.

    Returns:
        ``{"mailbox", "ok", "error", "capabilities": {name: bool}, "folders": {name:
        count or None when missing}}``.
    """
    from mailgate._imap_conn import ImapConnection, ImapError
    from mailgate.imap import mailbox_key

    report: dict[str, Any] = {"mailbox": mailbox_key(mailbox), "ok": False, "error": "",
                              "capabilities": {}, "folders": {}}
    try:
        conn = await ImapConnection.open(mailbox, timeout=timeout)
    except (ImapError, OSError) as exc:
        report["error"] = str(exc) or type(exc).__name__
        return report
    try:
        report["capabilities"] = {c: conn.has(c) for c in CAPABILITIES}
        for folder in (mailbox.folder, mailbox.processed_folder, mailbox.quarantine_folder):
            if folder and folder not in report["folders"]:
                exists = await conn.exists(folder)
                report["folders"][folder] = await conn.message_count(folder) if exists else None
        if report["folders"].get(mailbox.folder) is None:
            report["error"] = f"folder {mailbox.folder!r} does not exist"
        else:
            report["ok"] = True
    except (ImapError, OSError) as exc:
        report["error"] = str(exc) or type(exc).__name__
    finally:
        await conn.close()
    return report


async def _polling_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per mailbox key: last UID, UIDVALIDITY and lease holder; empty when unreadable."""
    from sqlalchemy import select

    from helpdesk.models import ImapState
    from helpdesk.runtime import Runtime

    database = settings.database.sqlite_file
    if database is not None and not database.exists():
        return {}  # never polled here; do not create an empty database file
    try:
        rt = await Runtime.open(settings, migrate=False)
    except Exception:
        return {}
    try:
        async with rt.sessions() as session:
            rows = (await session.execute(select(ImapState))).scalars().all()
        return {r.mailbox: {"last_uid": r.last_uid, "uidvalidity": r.uidvalidity,
                            "holder": r.holder,
                            "lease_until": r.lease_until.isoformat() if r.lease_until else None}
                for r in rows}
    except Exception:
        return {}
    finally:
        await rt.close()


def _render(mailbox: ImapSettings, report: dict[str, Any], state: dict[str, Any] | None) -> str:
    lines = [report["mailbox"]]
    if report["capabilities"]:
        lines.append("  login: ok")
        lines.append("  " + "  ".join(f"{name}: {'yes' if has else 'no'}"
                                      for name, has in report["capabilities"].items()))
    for folder, n in report["folders"].items():
        if n is not None:
            lines.append(f"  {folder}: {n} message{'' if n == 1 else 's'}")
        elif folder == mailbox.folder:
            lines.append(f"  {folder}: missing")
        else:
            lines.append(f"  {folder}: missing (created on first poll)")
    if not mailbox.processed_folder:
        lines.append("  processed folder: none (messages are flagged \\Seen)")
    lines.append(f"  poll interval: {mailbox.poll_interval:g}s")
    if state:
        lines.append(f"  polling state: last UID {state['last_uid']}, "
                     f"holder {state['holder'] or '-'}")
    if report["error"]:
        lines.append(f"  error: {report['error']}")
    return "\n".join(lines)


@imap.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.pass_context
@run_async
async def check(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Log in to each [[imap]] mailbox; report folders, message counts, IDLE/MOVE support."""
    settings = settings_of(ctx)
    if not settings.imap:
        if as_json:
            click.echo("[]")
        else:
            click.echo("no [[imap]] mailboxes configured")
        return
    reports = [await check_mailbox(m) for m in settings.imap]
    states = await _polling_state(settings)
    for report in reports:
        report["state"] = states.get(report["mailbox"])
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    else:
        click.echo("\n".join(_render(m, r, r["state"])
                             for m, r in zip(settings.imap, reports, strict=True)))
    if not all(r["ok"] for r in reports):
        ctx.exit(1)
