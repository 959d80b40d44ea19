"""`helpdesk spool list | retry`: received raw mail and what became of it; replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from helpdesk.cli_common import config_option, echo_json, run_async, with_runtime

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime


@click.group()
@config_option
def spool(config_path: str | None) -> None:
    """Inspect received raw messages; replay quarantined ones."""


@spool.command("list")
@config_option
@click.option("--quarantined", is_flag=True, help="Only quarantined messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def spool_list(ctx: click.Context, config_path: str | None, quarantined: bool,
                     as_json: bool) -> None:
    """List received messages and what became of them."""
    from sqlalchemy import select

    from helpdesk.models import InboundSpool
    from helpdesk.views import iso

    async def work(rt: Runtime) -> None:
        async with rt.read_sessions() as session:
            stmt = select(InboundSpool).order_by(InboundSpool.id.desc())
            if quarantined:
                stmt = stmt.where(InboundSpool.status == "quarantined")
            rows = (await session.execute(stmt)).scalars().all()
        data = [{"id": r.id, "status": r.status, "reason": r.reason, "via": r.via,
                 "message_id": r.message_id, "sha256": r.sha256, "size": r.size,
                 "received_at": iso(r.received_at)} for r in rows]
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("no quarantined messages" if quarantined else "no received messages",
                       err=True)
        for d in data:
            click.echo(f"{d['id']:>6} {d['status']:<12} {d['via']:<5} {d['reason']}")
    await with_runtime(ctx, work, read_only=True)


@spool.command("retry")
@config_option
@click.argument("spool_id", type=int)
@click.pass_context
@run_async
async def spool_retry(ctx: click.Context, config_path: str | None, spool_id: int) -> None:
    """Run a quarantined message through the pipeline again."""
    from mailgate.ingest import Gateway

    async def work(rt: Runtime) -> None:
        result = await Gateway(rt).retry(spool_id)
        click.echo(f"{spool_id}: {result.disposition}"
                   + (f" {result.ticket}" if result.ticket else "")
                   + (f" ({result.reason})" if result.reason else ""))
    await with_runtime(ctx, work, read_only=True)
