"""`helpdesk sla ...`: run the SLA role, show a ticket's clocks, tick by hand, list policies.

``helpdesk sla`` alone runs the SLA process role (as ``mailgate``/``worker``/``portal`` do);
``status``, ``tick`` and ``policies`` are subcommands. :func:`sla_summary`,
:func:`sla_summaries` and :func:`sla_state` are the read side for ``tickets show`` /
``tickets list --sla STATE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.cli_common import (
    config_option,
    echo_json,
    parse_ticket_ref,
    run_async,
    serve_roles,
    settings_of,
    with_runtime,
)
from helpdesk.config import Settings
from helpdesk.models import Ticket
from helpdesk.runtime import Runtime
from helpdesk.views import load_ticket

STATES = ("on_track", "warning", "breached", "paused", "met")
_WORST_FIRST = ("breached", "warning", "on_track", "paused", "met")


async def sla_summaries(session: AsyncSession, settings: Settings, tickets: Sequence[Ticket],
                        at: datetime) -> dict[int, dict[str, Any]]:
    """``{ticket.id: sla_summary(...)}`` for many tickets, with one history query."""
    from sla_daemon.engine import Engine, load_histories

    engine = Engine(settings)
    histories = await load_histories(session, tickets)
    return {t.id: engine.evaluate(t, histories[t.id], at).as_json() for t in tickets}


async def sla_summary(session: AsyncSession, settings: Settings, ticket: Ticket,
                      at: datetime) -> dict[str, Any]:
    """A ticket's SLA as of ``at``, evaluated from its history (read-only).

    Returns:
        ``{"policy": name, "first_response": {...}, "resolution": {...}}``; each clock has
        ``target_minutes``, ``elapsed_minutes``, ``warn_at``, ``due_at`` (ISO 8601, null
        while paused or met) and ``state`` (on_track, warning, breached, paused or met).
    """
    return (await sla_summaries(session, settings, [ticket], at))[ticket.id]


def sla_state(summary: dict[str, Any]) -> str:
    """The ticket's one SLA state for filtering: the worst of its clocks.

    Order, worst first: breached, warning, on_track, paused, met.
    """
    states = [summary[k]["state"] for k in ("first_response", "resolution") if k in summary]
    return min(states, key=_WORST_FIRST.index, default="met")


def parse_instant(text: str | None) -> datetime | None:
    """An ISO 8601 instant from the command line; without an offset it is read as UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 instant: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@click.group(invoke_without_command=True)
@config_option
@click.pass_context
def sla(ctx: click.Context, config_path: str | None) -> None:
    """Run the SLA daemon role (no subcommand), or inspect and tick SLA clocks."""
    if ctx.invoked_subcommand is None:
        serve_roles(ctx, ("sla",))


@sla.command("status")
@config_option
@click.argument("ref")
@click.option("--at", "at_text", metavar="ISO8601", help="Evaluate as of this instant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def sla_status(ctx: click.Context, config_path: str | None, ref: str,
                     at_text: str | None, as_json: bool) -> None:
    """Show a ticket's first-response and resolution clocks."""
    async def work(rt: Runtime) -> None:
        at = parse_instant(at_text) or rt.clock()
        async with rt.read_sessions() as session:
            ticket = await load_ticket(session, parse_ticket_ref(rt.settings, ref))
            summary = await sla_summary(session, rt.settings, ticket, at)
        if as_json:
            echo_json(summary)
            return
        click.echo(f"policy {summary['policy']}")
        for kind in ("first_response", "resolution"):
            c = summary[kind]
            click.echo(f"{kind:<15} {c['state']:<9} {c['elapsed_minutes']:>9} / "
                       f"{c['target_minutes']} min  due {c['due_at'] or '-'}")
    await with_runtime(ctx, work, read_only=True)


@sla.command("tick")
@config_option
@click.option("--at", "at_text", metavar="ISO8601",
              help="Evaluate as of this instant (default now; no offset means UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def sla_tick(ctx: click.Context, config_path: str | None, at_text: str | None,
                   as_json: bool) -> None:
    """Evaluate the due tickets once and fire their warnings and breaches."""
    from sla_daemon.engine import tick

    async def work(rt: Runtime) -> None:
        at = parse_instant(at_text) or rt.clock()
        result = await tick(rt, at)
        data = {"at": at.isoformat(), "tickets": result.tickets,
                "warnings": result.warnings, "breaches": result.breaches}
        if as_json:
            echo_json(data)
            return
        click.echo(f"tick at {data['at']}: {result.tickets} tickets evaluated, "
                   f"{result.warnings} warnings, {result.breaches} breaches fired")
    await with_runtime(ctx, work, read_only=True)


@sla.command("policies")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def sla_policies(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """List the SLA policies in force (the built-in default when none are configured)."""
    from sla_daemon.policy import policies_from_settings

    policies = [p.describe() for p in policies_from_settings(settings_of(ctx))]
    if as_json:
        echo_json(policies)
        return
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    for p in policies:
        hours = ", ".join(f"{day} {'-'.join(h)}" for day, h in zip(days, p["hours"], strict=True)
                          if h is not None)
        click.echo(f"{p['name']}{' (the default policy)' if p['default'] else ''}  "
                   f"{p['timezone']}  "
                   f"{hours or 'never open'}")
        if p["holidays"]:
            click.echo(f"  holidays: {', '.join(p['holidays'])}")
        click.echo(f"  first response: {_targets(p['first_response_minutes'])}")
        click.echo(f"  resolution:     {_targets(p['resolution_minutes'])}")
        conditions = [*p["organizations"], *p["categories"]]
        if conditions:
            click.echo(f"  applies to: {', '.join(conditions)}")


def _targets(minutes: dict[str, int]) -> str:
    """``urgent 1 h, normal 8 h`` from ``{"urgent": 60, "normal": 480}``; "none" if empty."""
    def span(m: int) -> str:
        return f"{m // 60} h" if m % 60 == 0 and m >= 60 else f"{m} min"
    return ", ".join(f"{name} {span(m)}" for name, m in minutes.items()) or "none"
