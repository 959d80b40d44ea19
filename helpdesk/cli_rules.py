"""`helpdesk teams ...` and `helpdesk rules ...`: the teams and auto-assignment rules.

Part of the composition root: `rules test` reads a mail as the gateway does (mailgate's
parser and routing), read-only.

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
    from helpdesk.automation import automation_actor
    from helpdesk.history import Change

    settings = settings_of(ctx)

    async def work(rt: Runtime) -> None:
        data = [{"kind": "assignment", **row} for row in await _hits(
            rt, settings.assignment, rule_actor, Change.ASSIGNEE, _assignment_does)]
        data += [{"kind": "automation", **row} for row in await _hits(
            rt, settings.automations, automation_actor, Change.AUTOMATION_FIRED,
            lambda a: f"on {a.on}: {len(a.actions)} action(s){', stop' if a.stop else ''}")]
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("no rules configured ([[assignment]], [[automations]])", err=True)
        kind = ""
        for row in data:
            if row["kind"] != kind:
                kind = row["kind"]
                click.echo("assignment rules:" if kind == "assignment" else "automations:")
            click.echo(f"{row['order']:>3}. {row['name']:<30} "
                       f"{'on ' if row['enabled'] else 'off'} {row['does']:<40} "
                       f"{row['hits']} hit(s){', last ' + row['last'][:16] if row['last'] else ''}")
    await with_runtime(ctx, work, read_only=True)


async def _hits(rt: Runtime, rules: Any, actor_of: Any, action: str,
                does: Any) -> list[dict[str, Any]]:
    """Each rule in order with what it does, its hits and when it last fired, counted from
    the audit rows its actor wrote under ``action``."""
    from helpdesk.models import AuditEvent

    actors = {str(actor_of(r)): r.name for r in rules}
    async with rt.read_sessions() as session:
        rows = (await session.execute(
            select(AuditEvent.actor, func.count(), func.max(AuditEvent.created_at)).where(
                AuditEvent.action == action, AuditEvent.actor.in_(list(actors)))
            .group_by(AuditEvent.actor))).all()
    hits = {actors[actor]: (int(n), last) for actor, n, last in rows}
    out = []
    for n, rule in enumerate(rules, 1):
        count, last = hits.get(rule.name, (0, None))
        out.append({"order": n, "name": rule.name, "enabled": rule.enabled,
                    "does": does(rule), "hits": count,
                    "last": last.isoformat() if last else None})
    return out


def _assignment_does(rule: Any) -> str:
    if rule.assign:
        return f"assign {rule.assign}"
    if rule.method != "category":
        return f"{rule.method} in {rule.team}"
    return "by category: " + ", ".join(f"{c}->{t}" for c, t in rule.categories.items())


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


@rules.command("test")
@config_option
@click.argument("file", type=click.File("rb"))
@click.pass_context
@run_async
async def rules_test(ctx: click.Context, config_path: str | None, file: Any) -> None:
    """Show which rules and new-ticket automations a mail in FILE would match.

    The mail is read as the gateway reads it (queue, routing rules, sender); nothing is
    written and no round-robin turn moves.
    """
    from helpdesk.assignment import TicketView, matches
    from helpdesk.automation import all_automations
    from helpdesk.models import Agent, AssignmentTurn, Ticket
    from mailgate.parse import parse_message
    from mailgate.routing import header_recipients, resolve_queue

    settings = settings_of(ctx)
    msg = parse_message(file.read())
    route = resolve_queue(settings, header_recipients(msg), msg)
    t = settings.tickets
    sender = msg.sender.email if msg.sender else ""
    domain = sender.rpartition("@")[2]
    freemail = {d.lower() for d in t.freemail_domains}
    view = TicketView(
        queue=route.queue, category=route.category or t.categories[0],
        priority=route.priority or t.default_priority,
        type=route.type or t.default_type,
        organization="" if domain in freemail else domain, sender_domain=domain,
        subject=" ".join(msg.subject.split()) or "(no subject)",
        body=msg.text or msg.visible_text, channel="email",
        tags=frozenset(x.lower() for x in route.tags))
    click.echo(f"from {sender or '(nobody)'}, queue {view.queue or '(default)'}, category "
               f"{view.category}, type {view.type}, priority {view.priority}, "
               f"subject {view.subject!r}")

    async def work(rt: Runtime) -> None:
        now = rt.clock()
        async with rt.read_sessions() as session:
            agents = {a.email: a for a in (await session.execute(select(Agent))).scalars()}
            turns = dict((await session.execute(
                select(AssignmentTurn.team, AssignmentTurn.last_agent_id))).all())
            active = [s.name for s in t.statuses if s.status_class == "active"]
            load = dict((await session.execute(
                select(Ticket.assignee_id, func.count()).where(Ticket.status.in_(active))
                .group_by(Ticket.assignee_id))).all())
        decided = False
        for n, rule in enumerate(settings.assignment, 1):
            if not rule.enabled:
                click.echo(f"{n:>3}. {rule.name}: off")
                continue
            if not matches(rule.when, view):
                click.echo(f"{n:>3}. {rule.name}: no match")
                continue
            if decided:
                click.echo(f"{n:>3}. {rule.name}: would match, but an earlier rule decides")
                continue
            decided = True
            outcome = _outcome(rule, view, agents, turns, load, now, settings)
            click.echo(f"{n:>3}. {rule.name}: MATCH -> {outcome}")
        if not decided:
            click.echo("no rule matches: the ticket stays unassigned")
        created = [a for a in all_automations(settings)
                   if a.on == "ticket_created"]
        if created:
            click.echo("automations on ticket_created:")
        for automation in created:
            state = ("off" if not automation.enabled else
                     "MATCH" if matches(automation.when, view) else "no match")
            actions = ", ".join(next(k for k in ("set", "tag", "note", "assign", "mail",
                                                 "webhook") if getattr(a, k))
                                for a in automation.actions)
            click.echo(f"  {automation.name}: {state} ({actions or 'no actions'}"
                       f"{'; stop' if automation.stop else ''})")
    await with_runtime(ctx, work, read_only=True)


def _outcome(rule: Any, view: Any, agents: dict[str, Any], turns: dict[str, Any],
             load: dict[Any, int], now: Any, settings: Any) -> str:
    """What the deciding rule would do, from the agents and turns as they stand."""
    from helpdesk.assignment import Candidate, least_busy, next_in_turn, team_for

    def free(email: str) -> bool:
        agent = agents.get(email.strip().lower())
        return agent is not None and agent.is_active and not agent.is_away(now)

    if rule.assign:
        return (f"assign {rule.assign}" if free(rule.assign)
                else f"{rule.assign} is not available: {rule.fallback}")
    team = settings.team(team_for(rule, view))
    members = [agents[e] for e in (m.strip().lower() for m in team.members) if e in agents]
    candidates = [Candidate(a.id, a.email, free(a.email), load.get(a.id, 0),
                            a.last_assigned_at) for a in members]
    chosen = (least_busy(candidates) if rule.method == "least_busy"
              else next_in_turn(candidates, turns.get(team.name)))
    how = "least busy" if rule.method == "least_busy" else "round robin"
    if chosen is None:
        return f"nobody in team {team.name} is available: fallback {rule.fallback}"
    return f"{how} in team {team.name}: {chosen.email}"
