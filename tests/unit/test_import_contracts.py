"""The import rules of DESIGN.md hold, and the check that enforces them has teeth.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); this test runs
``lint-imports`` on them, so the README's test command enforces them. The second test
copies the packages, adds one import in a circle, and shows the same contracts fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("helpdesk", "mailgate", "responders", "sla_daemon", "portal_lite")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` of this environment on ``cwd``'s pyproject.toml and packages."""
    exe = Path(sys.executable).with_name("lint-imports")
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the packages in cwd, not the installed ones
    return subprocess.run([*command, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text("utf-8") + f"\n{line}\n", "utf-8")


def test_an_import_in_a_circle_breaks_the_contracts(copy: Path) -> None:
    # helpdesk.subjects imports helpdesk.refs; the way back closes a circle
    _append(copy / "helpdesk" / "refs.py", "from helpdesk import subjects  # noqa")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "no import cycles among the modules of a package BROKEN" in result.stdout
    assert ".refs -> .subjects" in result.stdout or ".subjects -> .refs" in result.stdout


def test_a_role_importing_another_breaks_the_contracts(copy: Path) -> None:
    _append(copy / "portal_lite" / "forms.py", "import responders.compose  # noqa")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "the four roles never import each other" in result.stdout
    assert "portal_lite.forms -> responders.compose" in result.stdout


def test_the_core_importing_a_role_breaks_the_contracts(copy: Path) -> None:
    _append(copy / "helpdesk" / "cli_common.py", "import mailgate.thread  # noqa")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "helpdesk.cli_common -> mailgate.thread" in result.stdout
