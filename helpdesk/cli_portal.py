"""`helpdesk tickets revoke-links TKT`: withdraw every portal link to a ticket at once.

Every portal token carries a digest of its ticket's link secret; rotating the secret makes
every view, rating, download and my-tickets link minted before it answer 410. New mail
carries links under the new secret. The rotation is audited (never the secret itself), and
that audit event's time is what withdraws the ticket from "all my tickets" links (anchored
on another ticket) minted before it: the portal no longer lists or manages it through them.

Registered by the CLI on the ``tickets`` group: ``tickets.add_command(revoke_links)``.
This module does not import :mod:`helpdesk.cli`, so either may import the other.
"""

from __future__ import annotations

import asyncio
import getpass

import click

from helpdesk.audit import Actor
from helpdesk.cli_common import config_path_of, parse_ticket_ref
from helpdesk.config import Settings, load_settings
from helpdesk.refs import format_ticket_ref
from helpdesk.runtime import Runtime
from helpdesk.tickets import TicketService
from helpdesk.views import load_ticket


def _settings(ctx: click.Context, config_path: str | None) -> Settings:
    obj = ctx.find_root().ensure_object(dict)
    if "settings" in obj:
        return obj["settings"]  # type: ignore[no-any-return]
    obj["settings"] = load_settings(config_path or config_path_of(ctx))
    return obj["settings"]  # type: ignore[no-any-return]


@click.command("revoke-links")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $HELPDESK_CONFIG, ./helpdesk.toml).")
@click.option("--reason", default="", help="Why, for the audit log.")
@click.argument("ref")
@click.pass_context
def revoke_links(ctx: click.Context, config_path: str | None, reason: str, ref: str) -> None:
    """Withdraw every portal link to ticket REF (view, rating, download, my-tickets)."""
    settings = _settings(ctx, config_path)
    number = parse_ticket_ref(settings, ref)

    async def work() -> str:
        rt = await Runtime.open(settings)
        try:
            async with rt.sessions() as session, session.begin():
                ticket = await load_ticket(session, number)
                await TicketService.for_runtime(session, rt).revoke_links(
                    ticket, Actor("cli", getpass.getuser()), reason=reason)
        finally:
            await rt.close()
        return format_ticket_ref(number, settings.tickets.prefix, settings.tickets.digits)

    reference = asyncio.run(work())
    click.echo(f"{reference}: every portal link revoked; new mail carries new links")
