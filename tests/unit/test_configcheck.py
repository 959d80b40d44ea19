"""Which addresses are ours, and the warnings `helpdesk config check` gives (pure functions)."""

from __future__ import annotations

import pytest

from helpdesk.config import AgentSettings, InstanceSettings, Settings, SmtpSettings
from helpdesk.configcheck import admin_loop_reason, admin_notice_note, config_warnings


def settings(admin: str = "admin@support.example.com", *, agents: tuple[str, ...] = (),
             local_parts: tuple[str, ...] = ()) -> Settings:
    return Settings(instance=InstanceSettings(admin_email=admin),
                    smtp=SmtpSettings(domains=("support.example.com",),
                                      addresses=("help@other.example",),
                                      local_parts=local_parts),
                    agents=tuple(AgentSettings(a) for a in agents))


@pytest.mark.parametrize(("address", "local_parts", "ours"), [
    ("support@support.example.com", (), True),
    ("Anything+tag@SUPPORT.example.com", (), True),
    ("help+x@other.example", (), True),
    ("someone@other.example", (), False),
    ("support+tok@support.example.com", ("support",), True),
    ("admin@support.example.com", ("support",), False),
    ("not-an-address", (), False),
])
def test_which_addresses_are_ours(address: str, local_parts: tuple[str, ...], ours: bool) -> None:
    assert settings(local_parts=local_parts).smtp.accepts(address) is ours


def test_default_admin_in_our_own_domain_is_warned_about() -> None:
    reason = admin_loop_reason(settings())
    assert reason is not None and "own loop" in reason
    assert any("admin_email" in w for w in config_warnings(settings()))


@pytest.mark.parametrize("s", [
    settings("ops@elsewhere.example"),
    settings(agents=("Admin@support.example.com",)),
    settings(local_parts=("support", "billing")),
    settings(""),
])
def test_admin_routed_elsewhere_is_not_warned_about(s: Settings) -> None:
    assert admin_loop_reason(s) is None
    assert not any("admin_email" in w for w in config_warnings(s))


def test_only_rows_for_the_admin_alone_carry_the_note() -> None:
    assert admin_notice_note(settings(), ["admin@support.example.com"]).startswith("sent, but")
    assert admin_notice_note(settings(), ["admin@support.example.com", "bob@x.example"]) == ""
    assert admin_notice_note(settings("ops@elsewhere.example"), ["ops@elsewhere.example"]) == ""


def test_relative_paths_are_warned_about_but_not_by_the_daemon() -> None:
    warnings = config_warnings(Settings())
    assert any("[database] url" in w for w in warnings)
    assert any("[storage] dir" in w for w in warnings)
    assert not any("relative" in w for w in config_warnings(Settings(), paths=False))
