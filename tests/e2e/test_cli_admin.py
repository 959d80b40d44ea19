"""The command line as a new admin meets it (issue 21): where the database is, errors that
name their cause, the grouped help, `tickets show` as text, and a fast start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.e2e.test_cli import free_port

MAIL = (b"From: Alice <alice@example.org>\r\nTo: support@support.example.com\r\n"
        b"Cc: Carol <carol@example.org>\r\nSubject: Printer on fire\r\n"
        b"Message-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nIt burns.\r\n--b\r\n"
        b"Content-Type: text/plain; name=log.txt\r\nContent-Disposition: attachment; "
        b"filename=log.txt\r\n\r\nsmoke\r\n--b--\r\n")


@pytest.fixture
def hd(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``helpdesk`` run in ``tmp_path`` with a config whose database is relative to it."""
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text('[database]\nurl = "sqlite+aiosqlite:///hd.db"\n[storage]\ndir = "data"\n'
                   f'[smtp]\nport = {free_port()}\n[portal]\nport = {free_port()}\n',
                   encoding="utf-8")

    def run(*args: str, stdin: bytes = b"", cwd: Path = tmp_path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "helpdesk", *args], input=stdin.decode(),
                              capture_output=True, text=True, timeout=120, cwd=cwd,
                              env=env)
    run.dir = tmp_path  # type: ignore[attr-defined]
    run.cfg = cfg  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize("command", [
    ("tickets", "list"), ("tickets", "show", "TKT-000001"), ("spool", "list"),
    ("outbox", "list"), ("sla", "status", "TKT-000001"), ("agents", "list"),
    ("canned", "list"), ("time", "export"),
])
def test_read_only_commands_never_create_a_database(hd, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    command: tuple[str, ...]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "helpdesk.toml").write_text(hd.cfg.read_text(), encoding="utf-8")
    proc = hd(*command, cwd=elsewhere)
    assert proc.returncode == 1, proc.stderr
    assert f"no database at {elsewhere / 'hd.db'}" in proc.stderr
    assert "helpdesk init" in proc.stderr and "Traceback" not in proc.stderr
    assert not (elsewhere / "hd.db").exists()


def test_the_status_filter_takes_any_case_and_names_the_known_ones(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    assert hd("ingest", stdin=MAIL).returncode == 0
    listed = hd("tickets", "list", "--status", "OPEN", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["number"] for t in json.loads(listed.stdout)] == ["TKT-000001"]
    assert json.loads(hd("tickets", "list", "--status", "in_progress", "--json").stdout) == []
    wrong = hd("tickets", "list", "--status", "opne")
    assert wrong.returncode == 2
    assert "unknown status 'opne'" in wrong.stderr and "Open" in wrong.stderr
    assert "Resolved" in wrong.stderr


def test_outbox_retry_of_an_unknown_row_exits_1(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    proc = hd("outbox", "retry", "4242")
    assert proc.returncode == 1 and "4242" in proc.stderr


@pytest.mark.parametrize("address", ["bob", "bob@", "bob@localhost", "Bob <bob@x.org>",
                                     "b ob@example.org"])
def test_agents_add_refuses_what_is_not_an_address(hd, address: str) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    proc = hd("agents", "add", address)
    assert proc.returncode == 2 and "not an email address" in proc.stderr
    assert json.loads(hd("agents", "list", "--json").stdout) == []


def test_imap_check_json_is_json_without_mailboxes(hd) -> None:  # type: ignore[no-untyped-def]
    proc = hd("imap", "check", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


def test_tickets_show_as_text_has_what_json_has(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    assert hd("ingest", stdin=MAIL).returncode == 0
    assert hd("agents", "add", "bob@example.com", "--name", "Bob").returncode == 0
    view = json.loads(hd("tickets", "show", "TKT-000001", "--json").stdout)
    text = hd("tickets", "show", "TKT-000001").stdout
    for label in ("status:", "priority:", "category:", "requester:", "assignee:",
                  "organization:", "tags:", "watchers:", "due:", "sla:", "csat:"):
        assert label in text, label
    assert view["requester"]["email"] in text and "carol@example.org" in text
    assert view["sla"]["first_response"]["state"] in text
    assert "[attachment] log.txt (text/plain" in text and "It burns." in text


def test_help_is_grouped_by_what_the_admin_does(hd) -> None:  # type: ignore[no-untyped-def]
    out = hd("--help").stdout
    sections = ["Set up:", "Run:", "Mail:", "Tickets:", "Agents:", "SLA:"]
    assert [out.index(s) for s in sections] == sorted(out.index(s) for s in sections)
    assert out.index("ingest") > out.index("Mail:") > out.index("mailgate")


def test_every_command_summary_is_its_own_first_help_line() -> None:
    from helpdesk.cli import COMMANDS

    for name, entry in COMMANDS.items():
        command = entry.load()
        assert isinstance(command, click.Command)
        first = (command.help or "").strip().splitlines()[0]
        assert entry.summary == first, name


def test_help_and_the_cli_module_load_no_database_or_web_stack() -> None:
    code = ("import sys, helpdesk.cli as c\n"
            "heavy = [m for m in ('sqlalchemy', 'alembic', 'starlette', 'uvicorn', 'dramatiq',"
            " 'aiosmtpd', 'jinja2') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_pipe_takes_mail_with_a_stray_nul_byte(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    proc = hd("ingest", stdin=MAIL.replace(b"It burns.", b"It \x00burns."))
    assert proc.returncode == 0, proc.stderr
    view = json.loads(hd("tickets", "show", "TKT-000001", "--json").stdout)
    assert "burns" in view["messages"][0]["text"]


def test_empty_listings_say_so_and_policies_read_as_hours(hd) -> None:  # type: ignore[no-untyped-def]
    assert hd("init").returncode == 0
    for args, said in [(("tickets", "list"), "no tickets"),
                       (("outbox", "list", "--failed"), "no failed outbox rows"),
                       (("spool", "list", "--quarantined"), "no quarantined messages")]:
        proc = hd(*args)
        assert proc.returncode == 0 and proc.stdout == "" and said in proc.stderr, args
    policies = hd("sla", "policies").stdout
    assert "(the default policy)" in policies and "normal 4 h" in policies
    assert "{" not in policies
