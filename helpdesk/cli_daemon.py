"""`helpdesk init | run | mailgate | worker | portal | reload`: create the database, run
the roles, make them read their rules again.

``helpdesk sla`` (the SLA role, with its inspection subcommands) is in `helpdesk.cli_sla`.
"""

from __future__ import annotations

import click

from helpdesk.cli_common import config_option, run_async, serve_roles, settings_of


@click.command()
@config_option
@click.pass_context
@run_async
async def init(ctx: click.Context, config_path: str | None) -> None:
    """Create or migrate the database (idempotent)."""
    from helpdesk import directory, schema
    from helpdesk.cli_common import sqlite_path, with_runtime
    from helpdesk.runtime import Runtime

    settings = settings_of(ctx)

    async def work(rt: Runtime) -> None:
        applied = await schema.migrate(rt.engine, settings=settings)
        for agent in settings.agents:
            async with rt.sessions() as session, session.begin():
                await directory.add_agent(session, agent.email, agent.name)
        where = sqlite_path(settings) or "the configured database"
        click.echo(f"database {where} at revision {schema.HEAD}"
                   + (" (migrated)" if applied else " (already up to date)"))
    await with_runtime(ctx, work, migrate=False)


@click.command()
@config_option
@click.pass_context
def run(ctx: click.Context, config_path: str | None) -> None:
    """Run every role in one process: SMTP, IMAP, workers, SLA daemon, portal."""
    serve_roles(ctx, ("mailgate", "worker", "sla", "portal"))


@click.command()
@config_option
@click.pass_context
def mailgate(ctx: click.Context, config_path: str | None) -> None:
    """Run the inbound gateway only: SMTP receiver and configured IMAP pollers."""
    serve_roles(ctx, ("mailgate",))


@click.command()
@config_option
@click.pass_context
def worker(ctx: click.Context, config_path: str | None) -> None:
    """Run the outbox relay and the Dramatiq workers that send mail."""
    serve_roles(ctx, ("worker",))


@click.command()
@config_option
@click.pass_context
def portal(ctx: click.Context, config_path: str | None) -> None:
    """Run the requester portal (signed links) only."""
    serve_roles(ctx, ("portal",))


@click.command()
@config_option
@click.pass_context
def reload(ctx: click.Context, config_path: str | None) -> None:
    """Make the running daemons read their rules again (teams, assignment, automations)."""
    from helpdesk.daemon import pid_dir, signal_daemons

    settings = settings_of(ctx)  # a mistake in the new file stops here (exit 2)
    told = signal_daemons(settings)
    if not told:
        raise click.ClickException(
            f"no running daemon found (pid files in {pid_dir(settings)}); under systemd: "
            "systemctl reload helpdesk (or the role units, helpdesk-mailgate ...)")
    click.echo(f"told {told} daemon(s) to read the rules in {settings.source} again")
