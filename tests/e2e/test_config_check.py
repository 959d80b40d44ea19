"""`helpdesk config check` as an operator runs it: a real process, a real config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_config_check_command_prints_the_warnings(tmp_path: Path) -> None:
    cfg = tmp_path / "helpdesk.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "hd.db"}"\n'
                   f'[storage]\ndir = "{tmp_path / "data"}"\n'
                   '[instance]\nadmin_email = "admin@support.example.com"\n')
    proc = subprocess.run([sys.executable, "-m", "helpdesk", "config", "check", "--config",
                           str(cfg), "--strict"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.startswith("warning: [instance] admin_email admin@support.example.com")
    cfg.write_text(cfg.read_text().replace("admin@support.example.com", "ops@example.net"))
    proc = subprocess.run([sys.executable, "-m", "helpdesk", "config", "check", "--config",
                           str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: ")
