"""`helpdesk report SECTION`, `helpdesk dashboard`: the support lead's figures.

The JSON form is the stable one (README "Reports"); ``table`` prints it for reading and
``csv`` flattens it (one row per figure for ``overview``, one per row for the lists).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from helpdesk.cli_common import config_option, run_async, with_runtime
from helpdesk.report_text import as_csv, as_table, cell

if TYPE_CHECKING:
    from helpdesk.runtime import Runtime

CHOICES = ("overview", "trends", "agents", "sla", "csat", "channels", "health", "all")


@click.command("report")
@config_option
@click.argument("section", type=click.Choice(CHOICES))
@click.option("--since", default=None, help="From (a date or ISO 8601; default 30 days ago).")
@click.option("--until", default=None, help="Until, exclusive (default now).")
@click.option("--queue", default="", help="Only this queue (its address).")
@click.option("--agent", default="", help="Only tickets assigned to this agent.")
@click.option("--organization", default="", help="Only this organization (name or domain).")
@click.option("--type", "type_", default="", help="Only tickets of this type (any case).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html", "pdf"]),
              default="table", show_default=True,
              help="html: one file with inline SVG charts; pdf: the same, paged (both need "
                   "helpdesk[reports]).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default stdout; pdf needs a file).")
@click.pass_context
@run_async
async def report(ctx: click.Context, config_path: str | None, section: str, since: str | None,
                 until: str | None, queue: str, agent: str, organization: str, type_: str,
                 fmt: str, output: str | None) -> None:
    """Report KPIs: overview, trends, agents, sla, csat, channels, health, or all."""
    from helpdesk.cli_sla import parse_instant
    from helpdesk.reports import Scope
    from helpdesk.reports import report as build

    if fmt == "pdf" and output is None:
        raise click.UsageError("--format pdf writes a file: give -o FILE")

    async def work(rt: Runtime) -> tuple[dict[str, Any], dict[str, Any], str]:
        from helpdesk.reports import dashboard as figures

        end = parse_instant(until) or rt.clock()
        kind = ""
        if type_:
            kind = rt.settings.tickets.canonical_type(type_) or ""
            if not kind:
                raise click.BadParameter(
                    f"unknown type {type_!r} (known: "
                    f"{', '.join(t.name for t in rt.settings.tickets.types)})",
                    param_hint="--type")
        scope = Scope(parse_instant(since) or end - timedelta(days=30), end, queue, agent,
                      organization, kind)
        if scope.since >= scope.until:
            raise click.BadParameter("--since must be before --until")
        async with rt.read_sessions() as session:
            data = await build(session, rt.settings, section, scope)
            now = rt.clock()
            widgets = await figures(session, rt.settings, now,
                                    now.replace(hour=0, minute=0, second=0, microsecond=0))
        title = (f"{rt.settings.instance.name}: {section} report, "
                 f"{scope.since:%Y-%m-%d} to {scope.until:%Y-%m-%d}")
        return data, widgets, title
    data, widgets, title = await with_runtime(ctx, work, read_only=True)
    sections = dict(data) if section == "all" else {section: data}
    if fmt in ("html", "pdf"):
        from helpdesk.report_document import to_html, to_pdf

        tables = {name: as_table(part) for name, part in sections.items()}
        show = widgets if section in ("all", "overview") else None
        if fmt == "pdf":
            assert output is not None
            Path(output).write_bytes(to_pdf(sections, title=title, tables=tables,
                                            widgets=show))
            return
        text = to_html(sections, title=title, tables=tables, widgets=show)
    elif fmt == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "csv":
        text = "".join(as_csv(part) for part in sections.values())
    else:
        text = "\n\n".join(f"== {name}\n{as_table(part)}"
                            for name, part in sections.items()) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")


CARDS = (("open", "Open tickets"), ("sla_breaches_today", "SLA breaches today"),
         ("overdue", "Overdue tickets"), ("created_today", "Created today"),
         ("resolved_today", "Resolved today"), ("unassigned_open", "Unassigned, open"),
         ("first_response_median_today", "First response today (median min)"))


def render_cards(data: dict[str, Any], when: datetime) -> str:
    """The dashboard as boxes of text, three widgets first (pure)."""
    cells = [(label, cell(data[key])) for key, label in CARDS]
    width = max(len(label) for label, _ in cells) + 4
    lines = [f"helpdesk dashboard  {when:%Y-%m-%d %H:%M} {when.tzname() or ''}".rstrip(), ""]
    for row in (cells[:3], cells[3:6], cells[6:]):
        lines.append("  ".join("+" + "-" * width + "+" for _ in row))
        lines.append("  ".join("| " + value.rjust(width - 2) + " |" for _, value in row))
        lines.append("  ".join("| " + label.ljust(width - 2) + " |" for label, _ in row))
        lines.append("  ".join("+" + "-" * width + "+" for _ in row))
    return "\n".join(lines)


@click.command("dashboard")
@config_option
@click.option("--watch", type=click.FloatRange(1), default=None, metavar="SECONDS",
              help="Refresh every SECONDS until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON once.")
@click.pass_context
@run_async
async def dashboard(ctx: click.Context, config_path: str | None, watch: float | None,
                    as_json: bool) -> None:
    """Print the KPI cards: open tickets, SLA breaches today, overdue tickets, and more."""
    import asyncio

    from helpdesk.reports import dashboard as figures

    async def work(rt: Runtime) -> None:
        tz = rt.settings.instance.zone
        while True:
            now = rt.clock()
            local = now.astimezone(tz)
            day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
            async with rt.read_sessions() as session:
                data = await figures(session, rt.settings, now, day_start.astimezone(UTC))
            if as_json:
                click.echo(json.dumps(data, indent=2))
                return
            if watch:
                click.clear()
            click.echo(render_cards(data, local))
            if not watch:
                return
            await asyncio.sleep(watch)
    await with_runtime(ctx, work, read_only=True)
