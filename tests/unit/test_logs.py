"""One log format: our events and other libraries' records (uvicorn, Dramatiq) alike."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from helpdesk.config import LoggingSettings
from helpdesk.logs import configure_logging, log_format


def _emit() -> None:
    structlog.get_logger("helpdesk.test").info("ingest.applied", ticket="TKT-000001")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)


def test_json_renders_uvicorn_lines_like_our_events(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(), fmt="json")
    _emit()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line]
    assert [(e["event"], e["level"]) for e in lines] == [
        ("ingest.applied", "info"), ("Started server process [42]", "info")]
    assert lines[0]["ticket"] == "TKT-000001" and lines[1]["logger"] == "uvicorn.error"
    assert all("timestamp" in e for e in lines)


def test_console_renders_both_as_key_value_lines(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(), fmt="console")
    _emit()
    ours, theirs = [line for line in capfd.readouterr().err.splitlines() if line]
    assert "[info" in ours and "ingest.applied" in ours and "ticket=TKT-000001" in ours
    assert "[info" in theirs and "Started server process [42]" in theirs
    assert "uvicorn.error" in theirs


def test_default_is_console_on_a_terminal_and_json_otherwise() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    class Pipe:
        def isatty(self) -> bool:
            return False

    plain = LoggingSettings()
    assert log_format(plain, None, Tty()) == "console"  # type: ignore[arg-type]
    assert log_format(plain, None, Pipe()) == "json"  # type: ignore[arg-type]
    assert log_format(LoggingSettings(json=True), None, Tty()) == "json"  # type: ignore[arg-type]
    assert log_format(LoggingSettings(json=True), "console", Pipe()) == "console"  # type: ignore[arg-type]


async def test_a_quiet_sla_tick_logs_at_debug(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from structlog.testing import capture_logs

    from helpdesk.runtime import Runtime
    from sla_daemon.engine import tick
    from tests.conftest import make_settings, sqlite_url
    from tests.integration.test_sla_daemon import T0, Clock, open_ticket, with_policies

    structlog.reset_defaults()  # every level reaches capture_logs
    rt = await Runtime.open(with_policies(make_settings(tmp_path, sqlite_url(tmp_path))))
    try:
        await open_ticket(rt, Clock(T0))
        with capture_logs() as quiet:
            await tick(rt, T0)  # evaluated, nothing due yet
        from datetime import timedelta
        with capture_logs() as loud:
            await tick(rt, T0 + timedelta(days=2))  # breaches fire
    finally:
        await rt.close()
    [q] = [e for e in quiet if e["event"] == "sla.tick"]
    assert q["log_level"] == "debug"
    [lo] = [e for e in loud if e["event"] == "sla.tick"]
    assert lo["log_level"] == "info" and lo["breaches"] >= 1
