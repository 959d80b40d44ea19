"""SLA engine, pure parts: clocks replayed from history, alerts decided once, policy chosen."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.config import Settings, SlaPolicySettings, SlaSettings
from sla_daemon.clock import Calendar
from sla_daemon.engine import Engine, History, replay, stored_next
from sla_daemon.policy import (
    ClockState,
    clock_state_name,
    due_at,
    elapsed_at,
    fire_events,
    warn_at,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
ALWAYS = Calendar.always()
PAUSE = frozenset({"pending", "on hold"})
DONE = frozenset({"resolved", "closed"})


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def clock(kind: str, history: History, at: datetime, target: float | None = 60,
          cal: Calendar = ALWAYS, **flags: bool) -> ClockState:
    return replay(kind, history, at=at, target=target, calendar=cal,
                  paused=lambda s: s.lower() in PAUSE, done=DONE, **flags)


def history(*changes: tuple[float, str], first_response: float | None = None) -> History:
    return History(created_at=T0, initial_status="Open",
                   changes=tuple((m(t), s) for t, s in changes),
                   first_response_at=None if first_response is None else m(first_response))


def view(c: ClockState, at: datetime, cal: Calendar = ALWAYS) -> tuple[Any, ...]:
    """(elapsed, warn_at, due_at, state) as ``sla status`` shows them."""
    return (elapsed_at(c, at, cal), warn_at(c, cal), due_at(c, cal),
            clock_state_name(c, at, cal))


# --- replaying history -----------------------------------------------------------------------

def test_running_clock_projects_warning_and_due_instants() -> None:
    c = clock("first_response", history(), m(30))
    assert view(c, m(30)) == (30.0, m(48), m(60), "on_track")
    assert view(c, m(48))[3] == "warning"


def test_pause_stops_the_clock_and_resume_continues_it() -> None:
    h = history((10, "Pending"), (40, "Open"))
    assert view(clock("resolution", h, m(30)), m(30)) == (10.0, None, None, "paused")
    assert view(clock("resolution", h, m(50)), m(50)) == (20.0, m(78), m(90), "on_track")


def test_changes_after_the_evaluation_instant_are_ignored() -> None:
    c = clock("resolution", history((10, "Pending"), (40, "Open")), m(5))
    assert view(c, m(5)) == (5.0, m(48), m(60), "on_track")


def test_first_response_is_met_by_the_first_agent_reply_for_good() -> None:
    c = clock("first_response", history((30, "Resolved"), (40, "Open"), first_response=25),
              m(100))
    assert (c.met_at, c.is_running) == (m(25), False)
    assert view(c, m(100)) == (25.0, None, None, "met")


def test_resolution_is_met_from_the_start_of_the_resolved_stretch() -> None:
    c = clock("resolution", history((20, "Resolved"), (30, "Closed")), m(90))
    assert (c.met_at, elapsed_at(c, m(90), ALWAYS)) == (m(20), 20.0)


def test_reopen_resumes_resolution_time_rather_than_starting_over() -> None:
    c = clock("resolution", history((20, "Resolved"), (50, "Open")), m(60))
    assert (c.met_at, c.is_running) == (None, True)
    assert view(c, m(60)) == (30.0, m(78), m(90), "on_track")


def test_reopen_into_a_paused_status_stays_paused() -> None:
    c = clock("resolution", history((20, "Resolved"), (50, "Pending")), m(60))
    assert view(c, m(60)) == (20.0, None, None, "paused")


def test_a_clock_paused_after_its_target_reads_breached() -> None:
    c = clock("resolution", history((70, "On Hold")), m(100))
    assert view(c, m(100)) == (70.0, None, None, "breached")


def test_business_calendar_carries_the_clock_over_the_weekend() -> None:
    friday = datetime(2026, 3, 6, 16, 30, tzinfo=UTC)
    c = clock("first_response", History(created_at=friday, initial_status="Open"), friday,
              cal=Calendar.office())
    assert due_at(c, Calendar.office()) == datetime(2026, 3, 9, 9, 30, tzinfo=UTC)
    assert warn_at(c, Calendar.office()) == datetime(2026, 3, 9, 9, 18, tzinfo=UTC)


def test_no_target_means_no_events() -> None:
    c = clock("resolution", history(), m(10_000), target=None)
    assert fire_events(c, m(10_000), ALWAYS) == (c, ())
    assert stored_next(c, m(10_000), ALWAYS, 0.8) is None


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.lists(st.tuples(st.integers(1, 600), st.sampled_from(["Open", "Pending", "On Hold",
                                                                   "In Progress"])),
                max_size=12),
       st.integers(0, 3000))
def test_elapsed_is_the_running_part_of_the_wall_time_on_24x7(
        steps: list[tuple[int, str]], horizon: int) -> None:
    changes, t = [], 0
    for gap, status in steps:
        t += gap
        changes.append((t, status))
    c = clock("resolution", history(*changes), m(horizon), target=None)
    expected, current, last = 0, "Open", 0
    for at, status in [*[(x, s) for x, s in changes if x <= horizon], (horizon, "")]:
        if current.lower() not in PAUSE:
            expected += at - last
        current, last = status or current, at
    assert elapsed_at(c, m(horizon), ALWAYS) == pytest.approx(expected, abs=1e-6)
    assert c.is_running == (current.lower() not in PAUSE)


# --- alerts -----------------------------------------------------------------------------------

def test_stored_flags_are_kept_so_an_alert_never_repeats() -> None:
    c = clock("first_response", history(), m(50), warned=True)
    assert fire_events(c, m(50), ALWAYS) == (c, ())
    assert stored_next(c, m(50), ALWAYS, 0.8) == m(60)


def test_warning_then_breach_each_fire_once() -> None:
    c = clock("first_response", history(), m(50))
    c, events = fire_events(c, m(50), ALWAYS)
    assert events == ("warning",) and c.warned and not c.breached
    c, events = fire_events(c, m(61), ALWAYS)
    assert events == ("breached",) and c.breached
    assert fire_events(c, m(62), ALWAYS)[1] == ()
    assert stored_next(c, m(62), ALWAYS, 0.8) is None


def test_the_next_event_is_always_after_the_tick_instant() -> None:
    c = clock("first_response", history(), m(10))
    assert stored_next(c, m(10), ALWAYS, 0.8) == m(48)
    assert stored_next(c, m(48), ALWAYS, 0.8) == m(48) + timedelta(microseconds=1)


def test_paused_and_met_clocks_have_no_next_event() -> None:
    assert stored_next(clock("resolution", history((10, "Pending")), m(20)), m(20),
                       ALWAYS, 0.8) is None
    assert stored_next(clock("first_response", history(first_response=5), m(20)), m(20),
                       ALWAYS, 0.8) is None


# --- the engine's choice of policy ------------------------------------------------------------

def _ticket(domain: str | None = None, category: str = "general",
            priority: str = "normal") -> Any:
    org = None if domain is None else SimpleNamespace(domain=domain, name=domain.upper())
    return SimpleNamespace(organization=org, category=category, priority=priority)


def _engine(*policies: SlaPolicySettings) -> Engine:
    return Engine(dataclasses.replace(Settings(), sla=SlaSettings(policies=policies)))


def test_without_policies_the_office_hours_default_applies_in_the_instance_zone() -> None:
    engine = _engine()
    policy = engine.policy_for(_ticket())
    assert (policy.name, policy.calendar) == ("default", Calendar.office("UTC"))
    sla = engine.evaluate(_ticket(priority="Normal"), History(T0, "Open"), m(60))
    assert sla.as_json()["first_response"] == {
        "target_minutes": 240, "elapsed_minutes": 60.0, "warn_at": m(192).isoformat(),
        "due_at": m(240).isoformat(), "state": "on_track"}


def test_conditions_choose_by_organization_domain_or_name_then_category() -> None:
    engine = _engine(
        SlaPolicySettings(name="vip", organizations=("BIGCUSTOMER.COM",), always=True),
        SlaPolicySettings(name="billing", categories=("billing",), always=True))
    assert engine.policy_for(_ticket("bigcustomer.com")).name == "vip"
    assert engine.policy_for(_ticket(None, "billing")).name == "billing"
    assert engine.policy_for(_ticket("other.org")).name == "default"


def test_pause_statuses_of_a_policy_replace_the_paused_class() -> None:
    engine = _engine(SlaPolicySettings(name="strict", default=True, always=True,
                                       pause_statuses=("On Hold",),
                                       resolution_minutes={"normal": 100}))
    h = History(T0, "Open", ((m(10), "Pending"),))
    sla = engine.evaluate(_ticket(), h, m(30))
    assert sla.as_json()["resolution"]["state"] == "on_track"  # Pending does not pause here
    assert sla.as_json()["first_response"]["target_minutes"] is None
