"""Where the shipped templates are: beside the source tree, or where ``pip install`` put them.

The design keeps ``templates/`` at the top of the repository (admins edit copies of it), so
it is not a Python package. An editable install or a checkout reads it in place; a regular
``pip install .`` copies it to ``<prefix>/share/helpdesk/templates`` (pyproject
``data-files``), which is where this looks next.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[1] / "templates"


def templates_dir(kind: str) -> Path:
    """The shipped template folder of ``kind`` ("email" or "portal")."""
    candidates = [
        _SOURCE / kind,
        Path(sysconfig.get_path("data")) / "share" / "helpdesk" / "templates" / kind,
        Path(sys.prefix) / "share" / "helpdesk" / "templates" / kind,
    ]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"helpdesk's {kind} templates are missing; looked in "
        + ", ".join(str(c) for c in candidates))
