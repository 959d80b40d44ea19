"""Tests for helpdesk.daemon's role table: plain imports, and a broken install fails at start."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from helpdesk import daemon
from helpdesk.config import DatabaseSettings, Settings, StorageSettings
from helpdesk.errors import RoleFailedError


def test_every_role_loads_its_serve_function() -> None:
    import mailgate.service
    import portal_lite.service
    import responders.service
    import sla_daemon.service

    assert daemon.role_server("mailgate") is mailgate.service.serve
    assert daemon.role_server("worker") is responders.service.serve
    assert daemon.role_server("sla") is sla_daemon.service.serve
    assert daemon.role_server("portal") is portal_lite.service.serve


def test_a_role_that_cannot_be_imported_is_an_error_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sla_daemon.service", None)  # what a missing file does
    with pytest.raises(RoleFailedError, match="the sla role cannot start"):
        daemon.role_server("sla")


def test_run_stops_before_opening_anything_when_a_role_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "portal_lite.service", None)
    db = tmp_path / "helpdesk.db"
    settings = Settings(database=DatabaseSettings(url=f"sqlite+aiosqlite:///{db}"),
                        storage=StorageSettings(dir=str(tmp_path / "data")))
    with pytest.raises(RoleFailedError, match="the portal role cannot start"):
        asyncio.run(daemon.run_roles(settings, roles=("mailgate", "portal")))
    assert not db.exists()
