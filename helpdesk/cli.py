"""`helpdesk ...`: the command line, and the one place that wires the process roles together.

Each command lives in a ``cli_*`` module that is imported only when that command runs:
``helpdesk --help`` and an MTA's ``helpdesk ingest`` per message do not pay for the web
stack, Dramatiq or Alembic. The table below names every command with the function that
loads it (a plain import, so a broken install fails on that command, visibly).

Errors are rendered once, here: a configuration error is one line and exit 2; a domain
error is its message and its exit code; a temporary failure is exit 75 (EX_TEMPFAIL) so
that an MTA pipe retries; an unexpected error is logged and also exit 75. No traceback
reaches the operator's terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple

import click

from helpdesk.cli_common import EX_TEMPFAIL, config_option
from helpdesk.errors import ConfigError, HelpdeskError, NotFoundError, TransientError


class Entry(NamedTuple):
    """One top-level command: its help section, one line of help, and how to load it.

    (A named tuple, not a dataclass: it is defined on every start of the command line,
    the MTA pipe's included, and costs less to define.)"""

    section: str
    summary: str
    load: Callable[[], click.Command]


def _daemon(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from helpdesk import cli_daemon

        command: click.Command = getattr(cli_daemon, name)
        return command
    return load


def _ingest() -> click.Command:
    from helpdesk.cli_ingest import ingest
    return ingest


def _tickets() -> click.Command:
    from helpdesk.cli_tickets import tickets
    return tickets


def _spool() -> click.Command:
    from helpdesk.cli_spool import spool
    return spool


def _outbox() -> click.Command:
    from helpdesk.cli_outbox import outbox
    return outbox


def _imap() -> click.Command:
    from helpdesk.cli_imap import imap
    return imap


def _agents() -> click.Command:
    from helpdesk.cli_agents import agents
    return agents


def _teams() -> click.Command:
    from helpdesk.cli_rules import teams
    return teams


def _rules() -> click.Command:
    from helpdesk.cli_rules import rules
    return rules


def _statuses() -> click.Command:
    from helpdesk.cli_model import statuses
    return statuses


def _orgs() -> click.Command:
    from helpdesk.cli_model import orgs
    return orgs


def _report() -> click.Command:
    from helpdesk.cli_report import report
    return report


def _dashboard() -> click.Command:
    from helpdesk.cli_report import dashboard
    return dashboard


def _canned() -> click.Command:
    from helpdesk.cli_agents import canned
    return canned


def _time() -> click.Command:
    from helpdesk.cli_agents import time_group
    return time_group


def _sla() -> click.Command:
    from helpdesk.cli_sla import sla
    return sla


def _config() -> click.Command:
    from helpdesk.cli_config import config_group
    return config_group


COMMANDS: dict[str, Entry] = {
    "init": Entry("Set up", "Create or migrate the database (idempotent).", _daemon("init")),
    "config": Entry("Set up", "Check the configuration.", _config),
    "run": Entry("Run", "Run every role in one process: SMTP, IMAP, workers, SLA daemon, "
                 "portal.", _daemon("run")),
    "mailgate": Entry("Run", "Run the inbound gateway only: SMTP receiver and configured "
                      "IMAP pollers.", _daemon("mailgate")),
    "worker": Entry("Run", "Run the outbox relay and the Dramatiq workers that send mail.",
                    _daemon("worker")),
    "portal": Entry("Run", "Run the requester portal (signed links) only.", _daemon("portal")),
    "reload": Entry("Run", "Make the running daemons read their rules again (teams, "
                    "assignment, automations).", _daemon("reload")),
    "ingest": Entry("Mail", "Ingest raw messages from FILES (stdin when none), MTA-pipe "
                    "style.", _ingest),
    "spool": Entry("Mail", "Inspect received raw messages; replay quarantined ones.", _spool),
    "outbox": Entry("Mail", "Inspect mail waiting to be sent; send failed mail again.",
                    _outbox),
    "imap": Entry("Mail", "Inspect the configured IMAP mailboxes.", _imap),
    "tickets": Entry("Tickets", "List and inspect tickets.", _tickets),
    "statuses": Entry("Tickets", "Ticket statuses: list, add, rename, recolor, reorder, "
                      "remove.", _statuses),
    "orgs": Entry("Tickets", "Organizations: their domains, members and roles.", _orgs),
    "canned": Entry("Tickets", "Canned responses agents insert with #canned <shortcut>.",
                    _canned),
    "time": Entry("Tickets", "Time agents logged with #time.", _time),
    "agents": Entry("Agents", "Manage agents (the people who answer tickets).", _agents),
    "teams": Entry("Agents", "Teams of agents that auto-assignment rules share work in.",
                   _teams),
    "rules": Entry("Agents", "Auto-assignment rules: list them with their hits, check them.",
                   _rules),
    "report": Entry("Reports", "Report KPIs: overview, trends, agents, sla, csat, channels, "
                    "health, or all.", _report),
    "dashboard": Entry("Reports", "Print the KPI cards: open tickets, SLA breaches today, "
                       "overdue tickets, and more.", _dashboard),
    "sla": Entry("SLA", "Run the SLA daemon role (no subcommand), or inspect and tick SLA "
                 "clocks.", _sla),
}
"""Every top-level command, in help order; ``summary`` is the first line of its docstring
(a test holds them equal)."""

SECTIONS = ("Set up", "Run", "Mail", "Tickets", "Agents", "Reports", "SLA")


class HelpdeskGroup(click.Group):
    """The root group: commands from :data:`COMMANDS`, loaded on use, help by section."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        return entry.load() if entry is not None else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for section in SECTIONS:
            rows = [(name, e.summary) for name, e in COMMANDS.items() if e.section == section]
            with formatter.section(section):
                formatter.write_dl(rows)


@click.group(cls=HelpdeskGroup, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None,
              help="Log lines as JSON or for reading (default: console on a terminal, "
                   "JSON otherwise; [logging] json = true forces JSON).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_format: str | None) -> None:
    """helpdesk: an email-first help desk daemon."""
    obj = ctx.ensure_object(dict)
    obj["config_path"] = config_path
    obj["log_format"] = log_format


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the CLI and turns every error into one line and an exit code."""
    try:
        # ``process_of_its_own``: the command may end the process itself (the MTA
        # pipe does, see `helpdesk.cli_ingest.leave_at_once`); a caller that runs the
        # CLI inside its own process (click's test runner) never sets it.
        code = cli.main(args=argv, prog_name="helpdesk", standalone_mode=False,
                        obj={"process_of_its_own": True})
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"helpdesk: configuration error: {exc}", err=True)
        sys.exit(2)
    except NotFoundError as exc:
        click.echo(f"helpdesk: {exc}", err=True)
        sys.exit(exc.exit_code)
    except TransientError as exc:
        click.echo(f"helpdesk: temporary failure, retry later: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except HelpdeskError as exc:
        click.echo(f"helpdesk: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        import structlog

        from helpdesk.db import is_transient

        structlog.get_logger("helpdesk.cli").error("cli.failed", error=type(exc).__name__,
                                                   exc_info=exc)
        reason = "temporary failure" if is_transient(exc) else "internal error"
        click.echo(f"helpdesk: {reason} ({type(exc).__name__}); see the log", err=True)
        sys.exit(EX_TEMPFAIL)
    # standalone_mode=False hands back ctx.exit(n) as a return value instead of exiting
    sys.exit(code if isinstance(code, int) else 0)
