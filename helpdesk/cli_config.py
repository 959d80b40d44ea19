"""`helpdesk config check`: load the configuration and print what will misbehave.

Self-contained (its own ``--config`` option and settings loading) so that ``helpdesk.cli``
registers it without an import cycle. An invalid configuration is the CLI's usual one-line
error (exit 2); a valid one prints ``ok`` or one ``warning:`` line per problem (exit 0,
or 1 with ``--strict``), the same warnings the daemon logs at start-up.
"""

from __future__ import annotations

import json
import sys

import click

from helpdesk.config import load_settings
from helpdesk.configcheck import config_warnings


@click.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $HELPDESK_CONFIG, ./helpdesk.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when there is any warning.")
@click.pass_context
def check(ctx: click.Context, config_path: str | None, as_json: bool, strict: bool) -> None:
    """Load the configuration; print `ok` or one warning per line."""
    path = config_path or ctx.find_root().ensure_object(dict).get("config_path")
    settings = load_settings(path)
    warnings = config_warnings(settings)
    if as_json:
        click.echo(json.dumps({"config": settings.source, "warnings": warnings}, indent=2))
    elif warnings:
        for warning in warnings:
            click.echo(f"warning: {warning}")
    else:
        click.echo(f"ok: {settings.source}")
    if strict and warnings:
        sys.exit(1)
