"""SLA policies (config, choice) and one clock's accumulator: pause, resume, meet, retarget."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.config import Settings, SlaPolicySettings, SlaSettings
from helpdesk.errors import ConfigError
from sla_daemon.clock import Calendar, add_business_minutes, business_minutes_between
from sla_daemon.policy import (
    DEFAULT_TARGETS,
    ClockState,
    Policy,
    Targets,
    check_policies,
    choose_policy,
    clock_state_name,
    default_policy,
    due_at,
    elapsed_at,
    fire_events,
    meet,
    next_event_at,
    pause,
    policies_from_settings,
    policy_from_dict,
    resume,
    retarget,
    start,
    warn_at,
)

MONDAY = datetime(2024, 6, 17, 9, tzinfo=UTC)
OFFICE = Calendar.office()
ALWAYS = Calendar.always()


def at(minutes: float) -> datetime:
    return MONDAY + timedelta(minutes=minutes)


def policy(name: str, **kwargs: Any) -> Policy:
    return policy_from_dict({"name": name, **kwargs})


# --- policies --------------------------------------------------------------------------------

def test_default_policy_is_office_hours_with_targets_per_priority() -> None:
    p = default_policy("Europe/Berlin")
    assert (p.name, p.is_default, p.pause_statuses) == ("default", True, None)
    assert p.calendar == Calendar.office("Europe/Berlin")
    assert [p.target("first_response", x) for x in DEFAULT_TARGETS] == [480, 240, 120, 60, 30]
    assert [p.target("resolution", x) for x in DEFAULT_TARGETS] == [4800, 2400, 960, 480, 240]


def test_default_policy_from_settings_pauses_on_the_paused_class() -> None:
    p = default_policy(Settings())
    assert p.pause_statuses == {"pending", "on hold"}
    assert p.pauses("On Hold", frozenset()) and not p.pauses("Open", frozenset({"open"}))


def test_policy_without_own_pause_statuses_defers_to_the_paused_class() -> None:
    p = policy("x", categories=["billing"])
    assert p.pause_statuses is None
    assert p.pauses("Pending", frozenset({"pending"}))


def test_policy_from_dict_reads_every_key() -> None:
    p = policy_from_dict({
        "name": "gold", "default": False, "timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4, 5],
        "start": "08:00", "end": "24:00", "holidays": ["2024-12-25", date(2024, 12, 26)],
        "pause_statuses": ["Waiting"], "first_response_minutes": {"Urgent": 15, "normal": 60},
        "resolution_minutes": {"urgent": 120}, "organizations": ["acme.com"],
        "categories": ["billing"],
    })
    assert p.calendar == Calendar.office("Europe/Berlin", time(8), time(0), range(6),
                                         [date(2024, 12, 25), date(2024, 12, 26)])
    assert p.targets_for("URGENT") == Targets(15, 120)
    assert p.targets_for("normal") == Targets(60, None)
    assert p.target("resolution", "low") is None
    assert p.pause_statuses == {"waiting"}
    assert (p.organizations, p.categories) == ({"acme.com"}, {"billing"})


def test_policy_from_dict_defaults_to_office_hours_in_the_given_zone() -> None:
    p = policy_from_dict({"name": "x"}, timezone="America/New_York",
                         paused_statuses=frozenset({"pending"}))
    assert p.calendar == Calendar.office("America/New_York")
    assert p.pause_statuses == {"pending"}
    assert dict(p.targets) == {}


def test_always_means_24x7() -> None:
    assert policy("x", always=True, timezone="Europe/Berlin").calendar == Calendar.always(
        "Europe/Berlin")


@pytest.mark.parametrize(("bad", "key"), [
    ({"colour": "red"}, "colour"),
    ({"name": ""}, "name"),
    ({"default": "yes"}, "default"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"days": [1, 7]}, "days"),
    ({"start": "9am"}, "start"),
    ({"start": "17:00", "end": "09:00"}, "end"),
    ({"holidays": ["2024-13-01"]}, "holidays"),
    ({"holidays": "2024-12-25"}, "holidays"),
    ({"first_response_minutes": {"normal": -1}}, "first_response_minutes"),
    ({"resolution_minutes": {"normal": 1.5}}, "resolution_minutes"),
    ({"organizations": "acme.com"}, "organizations"),
])
def test_policy_from_dict_names_the_bad_key(bad: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=rf"sla\.policies '.*': {key}: "):
        policy_from_dict({"name": "broken", **bad})


def test_choose_policy_takes_the_first_match_else_the_default_else_builtin() -> None:
    vip = policy("vip", organizations=["Acme.com"])
    billing = policy("billing", categories=["billing"])
    both = policy("vip-billing", organizations=["acme.com"], categories=["billing"])
    standard = policy("standard", default=True)
    policies = [both, vip, billing, standard]

    def pick(org: str | list[str] | None, category: str | None) -> str:
        return choose_policy(policies, organization=org, category=category).name

    assert pick("ACME.COM", "Billing") == "vip-billing"
    assert pick("acme.com", "general") == "vip"
    assert pick(["Acme Inc", "acme.com"], None) == "vip"
    assert pick(None, "billing") == "billing"
    assert pick("other.org", "general") == "standard"
    assert choose_policy([vip], organization=None, category=None) == default_policy()
    fallback = default_policy("Europe/Berlin")
    assert choose_policy([vip], organization=None, category=None, fallback=fallback) is fallback


@pytest.mark.parametrize(("policies", "message"), [
    ([policy("a", default=True), policy("a", categories=["x"])], "used twice"),
    ([policy("a", default=True), policy("b", default=True)], "more than one default"),
    ([policy("a")], "never applies"),
])
def test_check_policies_refuses_lists_that_would_pick_wrongly(policies: list[Policy],
                                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_policies(policies)


def test_policies_from_settings_uses_instance_zone_and_reports_config_errors() -> None:
    base = Settings()
    instance = dataclasses.replace(base.instance, timezone="Europe/Berlin")
    good = SlaPolicySettings(name="std", default=True)
    s = dataclasses.replace(base, instance=instance, sla=SlaSettings(policies=(good,)))
    [p] = policies_from_settings(s)
    assert p.calendar.timezone == "Europe/Berlin" and p.pause_statuses == {"pending", "on hold"}
    bad = dataclasses.replace(s, sla=SlaSettings(policies=(good, SlaPolicySettings(name="x"))))
    with pytest.raises(ConfigError, match=r"sla\.policies 'x'"):
        policies_from_settings(bad)


def test_describe_lists_hours_monday_first_with_24_00() -> None:
    d = policy("x", default=True, days=[0], start="08:30", end="24:00",
               first_response_minutes={"normal": 5}).describe()
    assert d["hours"] == [["08:30", "24:00"], None, None, None, None, None, None]
    assert (d["default"], d["first_response_minutes"], d["resolution_minutes"]) == (
        True, {"normal": 5}, {})


# --- one clock -------------------------------------------------------------------------------

def running(target: float | None = 60, since: float = 0) -> ClockState:
    return start(ClockState(target), at(since), OFFICE)


def test_running_clock_counts_business_minutes_only() -> None:
    s = running(since=7 * 60)  # Monday 16:00
    assert elapsed_at(s, at(24 * 60 + 30), OFFICE) == 90.0  # to Tuesday 09:30


def test_pause_stops_elapsed_growth_and_resume_continues_it() -> None:
    s = pause(running(), at(10), OFFICE)
    assert s.running_since is None and s.elapsed_minutes == 10.0
    assert elapsed_at(s, at(100), OFFICE) == 10.0
    assert due_at(s, OFFICE) is None and clock_state_name(s, at(100), OFFICE) == "paused"
    s = resume(s, at(100), OFFICE)
    assert elapsed_at(s, at(130), OFFICE) == 40.0
    assert due_at(s, OFFICE) == at(150)


def test_pause_and_resume_are_idempotent() -> None:
    s = running()
    assert resume(s, at(5), OFFICE) == s
    p = pause(s, at(10), OFFICE)
    assert pause(p, at(20), OFFICE) == p


def test_meet_freezes_the_clock() -> None:
    s = meet(running(), at(30), OFFICE)
    assert s.met_at == at(30) and elapsed_at(s, at(500), OFFICE) == 30.0
    assert due_at(s, OFFICE) is None and next_event_at(s, OFFICE) is None
    assert clock_state_name(s, at(500), OFFICE) == "met"
    assert resume(s, at(40), OFFICE) == s and meet(s, at(50), OFFICE) == s
    assert fire_events(s, at(500), OFFICE) == (s, ())


def test_start_begins_afresh_keeping_the_target() -> None:
    old = dataclasses.replace(meet(running(), at(90), OFFICE), warned=True, breached=True)
    s = start(old, at(100), OFFICE)
    assert s == ClockState(60, running_since=at(100))


def test_priority_change_recomputes_the_due_instant() -> None:
    s = running(target=240)
    assert due_at(s, OFFICE) == at(240)
    urgent = retarget(s, 60, at(30), OFFICE)
    assert due_at(urgent, OFFICE) == at(60) and warn_at(urgent, OFFICE) == at(48)
    paused = retarget(pause(s, at(30), OFFICE), 60, at(40), OFFICE)
    assert (paused.elapsed_minutes, due_at(paused, OFFICE)) == (30.0, None)
    assert due_at(resume(paused, at(100), OFFICE), OFFICE) == at(130)
    assert due_at(retarget(s, None, at(30), OFFICE), OFFICE) is None


def test_looser_target_rearms_alerts_and_tighter_one_makes_them_due() -> None:
    s, events = fire_events(running(target=60), at(60), OFFICE)
    assert events == ("breached",) and s.warned and s.breached
    looser = retarget(s, 480, at(60), OFFICE)
    assert not looser.warned and not looser.breached
    assert next_event_at(looser, OFFICE) == at(384)
    tighter = retarget(looser, 30, at(60), OFFICE)
    assert next_event_at(tighter, OFFICE) == at(24)  # already past: fire at once
    assert fire_events(tighter, at(60), OFFICE)[1] == ("breached",)


def test_alerts_fire_once_each_in_order() -> None:
    s = running(target=100)
    assert next_event_at(s, OFFICE) == at(80)
    assert fire_events(s, at(79), OFFICE) == (s, ())
    assert clock_state_name(s, at(79), OFFICE) == "on_track"
    s, events = fire_events(s, at(80), OFFICE)
    assert events == ("warning",) and clock_state_name(s, at(80), OFFICE) == "warning"
    assert next_event_at(s, OFFICE) == at(100)
    assert fire_events(s, at(90), OFFICE)[1] == ()
    s, events = fire_events(s, at(100), OFFICE)
    assert events == ("breached",) and clock_state_name(s, at(100), OFFICE) == "breached"
    assert next_event_at(s, OFFICE) is None
    assert clock_state_name(pause(s, at(120), OFFICE), at(130), OFFICE) == "breached"


def test_clock_without_target_never_fires() -> None:
    s = running(target=None)
    assert (due_at(s, OFFICE), warn_at(s, OFFICE), next_event_at(s, OFFICE)) == (None,) * 3
    assert fire_events(s, at(10_000), OFFICE) == (s, ())
    assert clock_state_name(s, at(10_000), OFFICE) == "on_track"


def test_never_started_clock_reads_as_paused() -> None:
    s = ClockState(60)
    assert clock_state_name(s, at(10), OFFICE) == "paused" and next_event_at(s, OFFICE) is None


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        resume(ClockState(60), datetime(2024, 6, 17, 9), OFFICE)


# --- properties ------------------------------------------------------------------------------

MOVES = {"pause": pause, "resume": resume, "meet": meet}
moves = st.lists(st.tuples(st.sampled_from(sorted(MOVES)), st.integers(0, 20 * 24 * 60)),
                 max_size=12)
calendars = st.sampled_from([OFFICE, ALWAYS, Calendar.office("Europe/Berlin", days=range(7))])


@settings(max_examples=200, deadline=None)
@given(moves=moves, cal=calendars)
def test_elapsed_never_decreases_whatever_the_order_of_moves(moves: list[tuple[str, int]],
                                                             cal: Calendar) -> None:
    s = ClockState(60)
    for name, minute in moves:
        after = MOVES[name](s, at(minute), cal)
        assert after.elapsed_minutes >= s.elapsed_minutes
        assert elapsed_at(after, at(minute), cal) >= after.elapsed_minutes
        s = after


@settings(max_examples=200, deadline=None)
@given(moves=moves, cal=calendars)
def test_moves_in_time_order_count_exactly_the_running_spans(moves: list[tuple[str, int]],
                                                             cal: Calendar) -> None:
    s, spans, reading = ClockState(60), [], 0.0
    for name, minute in sorted(moves, key=lambda move: move[1]):
        now = at(minute)
        assert elapsed_at(s, now, cal) >= reading  # the reading only ever grows
        reading = elapsed_at(s, now, cal)
        was = s.running_since if s.is_running else None
        s = MOVES[name](s, now, cal)
        assert elapsed_at(s, now, cal) == pytest.approx(reading, abs=1e-9)  # moves are seamless
        if was is not None and not s.is_running:
            spans.append((was, now))
    expected = sum(business_minutes_between(a, b, cal) for a, b in spans)
    assert s.elapsed_minutes == pytest.approx(expected, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(target=st.one_of(st.integers(0, 5000), st.floats(0, 5000)),
       elapsed=st.floats(0, 6000), since=st.integers(0, 30 * 24 * 60),
       warned=st.booleans(), cal=calendars)
def test_a_daemon_waking_at_the_next_event_always_fires_something(
        target: float, elapsed: float, since: int, warned: bool, cal: Calendar) -> None:
    s = ClockState(target, elapsed, running_since=at(since), warned=warned)
    when = next_event_at(s, cal)
    assert when is not None
    later, fired = fire_events(s, when, cal)
    assert fired and later != s
    threshold = target if warned else 0.8 * target
    if elapsed < threshold - 1e-3:  # not reached yet: one millisecond earlier is too soon
        assert fire_events(s, when - timedelta(milliseconds=1), cal)[1] == ()
    assert when == add_business_minutes(at(since), max(0.0, threshold - elapsed), cal)
