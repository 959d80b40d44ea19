"""A regular (non-editable) ``pip install`` ships the templates and finds them.

``templates/`` sits at the top of the repository, outside any package; an install that
only copied the packages would start, then fail on the first acknowledgement or portal
page. This installs the project into a fresh virtualenv and looks from outside the tree.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

CHECK = textwrap.dedent("""
    from pathlib import Path
    import helpdesk, responders.compose as compose, portal_lite.portal as routes
    repo = Path(__import__("sys").argv[1])
    assert repo not in Path(helpdesk.__file__).parents, helpdesk.__file__
    assert repo not in compose.DEFAULT_TEMPLATES.parents, compose.DEFAULT_TEMPLATES
    assert (compose.DEFAULT_TEMPLATES / "acknowledgement.txt").is_file()
    assert (routes.TEMPLATE_DIR / "ticket.html").is_file()
    assert (routes.TEMPLATE_DIR / "static" / "portal.css").is_file()
    print(compose.DEFAULT_TEMPLATES)
""")


@pytest.mark.slow
def test_a_regular_install_ships_and_finds_the_templates(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = subprocess.run([str(python), "-c", CHECK, str(REPO)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert seen.returncode == 0, seen.stderr[-3000:]
    assert seen.stdout.strip().startswith(str(venv))
    helped = subprocess.run([str(venv / "bin" / "helpdesk"), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "mailgate" in helped.stdout, helped.stderr[-2000:]


README_MAIL = (b"From: alice@example.org\r\nTo: support@support.example.com\r\n"
               b"Subject: Printer on fire\r\nMessage-ID: <1@example.org>\r\n\r\nIt burns.\r\n")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_readme_commands_work_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """The README's install commands in a venv that sees nothing of this machine's packages.

    A dependency the code or the tests import but pyproject.toml does not declare (as
    ``cryptography`` once was) fails here: the app's commands would not start, or a test
    module would not import.
    """
    import os
    import signal
    import smtplib
    import time

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    done = subprocess.run([*pip, "-e", str(REPO)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    helpdesk = str(venv / "bin" / "helpdesk")
    work = tmp_path / "work"
    work.mkdir()
    smtp_port = _free_port()
    (work / "helpdesk.toml").write_text(
        f'[smtp]\nport = {smtp_port}\n[portal]\nport = {_free_port()}\n'
        '[outbound]\nport = 9\n[logging]\nlevel = "WARNING"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}

    def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([helpdesk, *args], input=stdin, cwd=work, env=env,
                              capture_output=True, timeout=120)

    helped = cli("--help")
    assert helped.returncode == 0 and b"ingest" in helped.stdout, helped.stderr[-2000:]

    # helpdesk run (creates the database): mail in by SMTP, a clean stop on SIGTERM
    proc = subprocess.Popen([helpdesk, "run"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as smtp:
                    smtp.sendmail("bob@example.org", ["support@support.example.com"],
                                  README_MAIL.replace(b"<1@", b"<0@"))
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "helpdesk run did not listen in 60 s"
                time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert cli("tickets", "show", "TKT-000001", "--json").returncode == 0

    # the README's "Try it": one mail through the MTA pipe, then the ticket
    stored = cli("ingest", stdin=README_MAIL)
    assert stored.returncode == 0, stored.stderr[-2000:]
    shown = cli("tickets", "show", "TKT-000002", "--json")
    assert shown.returncode == 0 and b"Printer on fire" in shown.stdout, shown.stderr[-2000:]

    # the test command's install: every test module imports from what [dev] declares
    dev = subprocess.run([*pip, "-e", f"{REPO}[dev]"], capture_output=True, text=True,
                         timeout=900)
    assert dev.returncode == 0, dev.stderr[-3000:]
    collected = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "--collect-only",
                                "-q", "-p", "no:cacheprovider", str(REPO / "tests")],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
