"""`helpdesk teams ...` and `helpdesk rules ...`: the teams and auto-assignment rules.

Teams and rules live in the config file (``[[teams]]``, ``[[assignment]]``); the loader
refuses what it can see is wrong (unknown team, bad regular expression). These commands
show them, check what needs the database (are the addresses agents?), and count each
rule's hits from the audit log, where every auto-assignment names its rule.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from helpdesk.cli_common import config_option, echo_json, run_async, settings_of, with_runtime
from helpdesk.runtime import Runtime


@click.group()
@config_option
def teams(config_path: str | None) -> None:
    """Teams of agents that auto-assignment rules share work in."""


@teams.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def teams_list(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """List the configured teams."""
    settings = settings_of(ctx)
    data: list[dict[str, Any]] = [{"name": t.name, "members": list(t.members), "lead": t.lead}
                                  for t in settings.teams]
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo("no teams configured ([[teams]] in the config file)", err=True)
    for team in data:
        click.echo(f"{team['name']:<20} {len(team['members'])} member(s)"
                   f"{', lead ' + team['lead'] if team['lead'] else ''}")


@teams.command("show")
@config_option
@click.argument("name")
@click.pass_context
@run_async
async def teams_show(ctx: click.Context, config_path: str | None, name: str) -> None:
    """Show team NAME: its members, whether each is available, and their open tickets."""
    from helpdesk.models import Agent, Ticket

    settings = settings_of(ctx)
    team = settings.team(name)
    if team is None:
        raise click.BadParameter(f"no team {name!r} (known: "
                                 f"{', '.join(t.name for t in settings.teams) or 'none'})",
                                 param_hint="NAME")
    active = [s.name for s in settings.tickets.statuses if s.status_class == "active"]

    async def work(rt: Runtime) -> None:
        now = rt.clock()
        async with rt.read_sessions() as session:
            agents = {a.email: a for a in (await session.execute(select(Agent))).scalars()}
            load = dict((await session.execute(
                select(Ticket.assignee_id, func.count()).where(Ticket.status.in_(active))
                .group_by(Ticket.assignee_id))).all())
        click.echo(f"team {team.name}{', lead ' + team.lead if team.lead else ''}")
        for email in team.members:
            agent = agents.get(email.strip().lower())
            state = ("not an agent" if agent is None else "inactive" if not agent.is_active
                     else f"away until {agent.away_until:%Y-%m-%d %H:%M}"
                     if agent.is_away(now) else "available")
            count = load.get(agent.id, 0) if agent is not None else 0
            click.echo(f"  {email:<40} {state:<28} {count} open")
    await with_runtime(ctx, work, read_only=True)


@click.group()
@config_option
def rules(config_path: str | None) -> None:
    """Auto-assignment rules: list them with their hits, check them."""


@rules.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def rules_list(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """The rules in the order they are tried, enabled or not, hits and last time fired."""
    from helpdesk.assignment import rule_actor
    from helpdesk.history import Change
    from helpdesk.models import AuditEvent

    settings = settings_of(ctx)

    async def work(rt: Runtime) -> None:
        actors = {str(rule_actor(r)): r.name for r in settings.assignment}
        async with rt.read_sessions() as session:
            rows = (await session.execute(
                select(AuditEvent.actor, func.count(), func.max(AuditEvent.created_at)).where(
                    AuditEvent.action == Change.ASSIGNEE,
                    AuditEvent.actor.in_(list(actors))).group_by(AuditEvent.actor))).all()
        hits = {actors[actor]: (int(n), last) for actor, n, last in rows}
        data: list[dict[str, Any]] = []
        for n, rule in enumerate(settings.assignment, 1):
            count, last = hits.get(rule.name, (0, None))
            how = (f"assign {rule.assign}" if rule.assign else
                   f"{rule.method} in {rule.team}" if rule.method != "category" else
                   "by category: " + ", ".join(f"{c}->{t}" for c, t in rule.categories.items()))
            data.append({"order": n, "name": rule.name, "enabled": rule.enabled, "does": how,
                         "hits": count, "last": last.isoformat() if last else None})
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("no assignment rules configured ([[assignment]])", err=True)
        for row in data:
            click.echo(f"{row['order']:>3}. {row['name']:<30} "
                       f"{'on ' if row['enabled'] else 'off'} {row['does']:<40} "
                       f"{row['hits']} hit(s){', last ' + row['last'][:16] if row['last'] else ''}")
    await with_runtime(ctx, work, read_only=True)


@rules.command("check")
@config_option
@click.pass_context
@run_async
async def rules_check(ctx: click.Context, config_path: str | None) -> None:
    """Check the teams and rules against the agents; exit 2 with a line per mistake."""
    from helpdesk.assignment import check_rules
    from helpdesk.models import Agent

    settings = settings_of(ctx)  # a mistake the loader sees has already exited 2

    async def work(rt: Runtime) -> list[str]:
        async with rt.read_sessions() as session:
            emails = list((await session.execute(select(Agent.email))).scalars())
        return check_rules(settings, emails)

    problems = await with_runtime(ctx, work, read_only=True)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        ctx.exit(2)
    click.echo(f"{len(settings.teams)} team(s), {len(settings.assignment)} rule(s): ok")
