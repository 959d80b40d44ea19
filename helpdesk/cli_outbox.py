"""`helpdesk outbox retry`: put mail that failed for good back in line to be sent.

Self-contained (its own ``--config`` option and settings loading) so that ``helpdesk.cli``
can register it without an import cycle::

    from helpdesk.cli_outbox import outbox_retry
    outbox.add_command(outbox_retry)

A retried row keeps its Message-ID; its attempts start again from zero and it is due at
once, so the next relay scan (``helpdesk worker`` or ``helpdesk run``) sends it.
"""

from __future__ import annotations

import asyncio

import click
from sqlalchemy import select

from helpdesk import outbox_ops
from helpdesk.config import load_settings
from helpdesk.logs import configure_logging
from helpdesk.models import OutboxRow
from helpdesk.runtime import Runtime


async def retry_rows(rt: Runtime, ids: tuple[int, ...], all_failed: bool) -> list[int]:
    """Move the given (or every) failed row back to pending; returns the ids moved."""
    async with rt.sessions() as session, session.begin():
        if all_failed:
            ids = tuple((await session.execute(
                select(OutboxRow.id).where(OutboxRow.status == outbox_ops.FAILED))).scalars())
        return await outbox_ops.retry(session, ids, now=rt.clock())


@click.command("retry")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $HELPDESK_CONFIG, ./helpdesk.toml).")
@click.option("--all-failed", is_flag=True, help="Retry every failed row.")
@click.argument("ids", nargs=-1, type=int)
@click.pass_context
def outbox_retry(ctx: click.Context, config_path: str | None, all_failed: bool,
                 ids: tuple[int, ...]) -> None:
    """Send failed outbox rows IDS again (same Message-ID, attempts reset).

    Exit 0 when every named row was requeued; 1 when a row does not exist or has not
    failed (it is pending, being sent or sent already); 2 without IDS or --all-failed.
    """
    if not ids and not all_failed:
        raise click.UsageError("give row IDS or --all-failed")
    root = ctx.find_root().ensure_object(dict)
    settings = load_settings(config_path or root.get("config_path"))
    configure_logging(settings.logging)

    async def work() -> list[int]:
        rt = await Runtime.open(settings)
        try:
            return await retry_rows(rt, ids, all_failed)
        finally:
            await rt.close()

    moved = asyncio.run(work())
    for row_id in moved:
        click.echo(f"{row_id} requeued")
    missing = sorted(set(ids) - set(moved))
    if missing:
        click.echo("not failed or not found: " + ", ".join(map(str, missing)), err=True)
        ctx.exit(1)
    if all_failed and not moved:
        click.echo("no failed rows")
