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

from tests.conftest import REPO

CHECK = textwrap.dedent("""
    from pathlib import Path
    import helpdesk, responders.compose as compose, portal_lite.routes as routes
    repo = Path(__import__("sys").argv[1])
    assert repo not in Path(helpdesk.__file__).parents, helpdesk.__file__
    assert repo not in compose.DEFAULT_TEMPLATES.parents, compose.DEFAULT_TEMPLATES
    assert (compose.DEFAULT_TEMPLATES / "acknowledgement.txt").is_file()
    assert (routes.TEMPLATE_DIR / "ticket.html").is_file()
    assert (routes.TEMPLATE_DIR / "static" / "portal.css").is_file()
    print(compose.DEFAULT_TEMPLATES)
""")


def test_a_regular_install_ships_and_finds_the_templates(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = subprocess.run([str(python), "-c", CHECK, str(REPO)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert seen.returncode == 0, seen.stderr[-3000:]
    assert seen.stdout.strip().startswith(str(venv))
    helped = subprocess.run([str(venv / "bin" / "helpdesk"), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "mailgate" in helped.stdout, helped.stderr[-2000:]
