"""`helpdesk outbox list | retry`: mail waiting to be sent, and failed mail sent again.

A retried row keeps its Message-ID; its attempts start again from zero and it is due at
once, so the next relay scan (``helpdesk worker`` or ``helpdesk run``) sends it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from helpdesk.cli_common import config_option, echo_json, run_async, with_runtime

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime


@click.group()
@config_option
def outbox(config_path: str | None) -> None:
    """Inspect mail waiting to be sent; send failed mail again."""


@outbox.command("list")
@config_option
@click.option("--failed", is_flag=True, help="Only rows that failed permanently.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def outbox_list(ctx: click.Context, config_path: str | None, failed: bool,
                      as_json: bool) -> None:
    """List outbox rows, newest first, with the last error of each."""
    from sqlalchemy import select

    from helpdesk.models import OutboxRow
    from helpdesk.views import iso

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            stmt = select(OutboxRow).order_by(OutboxRow.id.desc())
            if failed:
                stmt = stmt.where(OutboxRow.status == "failed")
            rows = (await session.execute(stmt)).scalars().all()
        data = [{"id": r.id, "kind": r.kind, "status": r.status, "to": r.recipients,
                 "message_id": r.message_id, "attempts": r.attempts, "error": r.last_error,
                 "created_at": iso(r.created_at), "sent_at": iso(r.sent_at),
                 "next_attempt_at": iso(r.next_attempt_at)} for r in rows]
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("no failed outbox rows" if failed else "no outbox rows", err=True)
        for d in data:
            to = ",".join(str(a) for a in d["to"] or [])  # type: ignore[union-attr]
            click.echo(f"{d['id']:>6} {d['status']:<8} {d['kind']:<14} {to}"
                       + (f"  {d['error']}" if d["error"] else ""))
    await with_runtime(ctx, work, read_only=True)


async def retry_rows(rt: Runtime, ids: tuple[int, ...], all_failed: bool) -> list[int]:
    """Move the given (or every) failed row back to pending; returns the ids moved."""
    from sqlalchemy import select

    from helpdesk import outbox_ops
    from helpdesk.models import OutboxRow

    async with rt.sessions() as session, session.begin():
        if all_failed:
            ids = tuple((await session.execute(
                select(OutboxRow.id).where(OutboxRow.status == outbox_ops.FAILED))).scalars())
        return await outbox_ops.retry(session, ids, now=rt.clock())


@outbox.command("retry")
@config_option
@click.option("--all-failed", is_flag=True, help="Retry every failed row.")
@click.argument("ids", nargs=-1, type=int)
@click.pass_context
@run_async
async def outbox_retry(ctx: click.Context, config_path: str | None, all_failed: bool,
                       ids: tuple[int, ...]) -> None:
    """Send failed outbox rows IDS again (same Message-ID, attempts reset).

    Exit 0 when every named row was requeued; 1 when a row does not exist or has not
    failed (it is pending, being sent or sent already); 2 without IDS or --all-failed.
    """
    if not ids and not all_failed:
        raise click.UsageError("give row IDS or --all-failed")

    async def work(rt: Runtime) -> list[int]:
        return await retry_rows(rt, ids, all_failed)

    moved = await with_runtime(ctx, work, read_only=True)
    for row_id in moved:
        click.echo(f"{row_id} requeued")
    missing = sorted(set(ids) - set(moved))
    if missing:
        click.echo("not failed or not found: " + ", ".join(map(str, missing)), err=True)
        ctx.exit(1)
    if all_failed and not moved:
        click.echo("no failed rows")
