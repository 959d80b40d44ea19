"""Business-time maths: worked examples, DST days, and properties against a brute-force scan."""

from __future__ import annotations

import time as walltime
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import accumulate, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_daemon.clock import Calendar, add_business_minutes, business_minutes_between

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
# UTC midnights a few days before DST changes (New York 10 Mar and 3 Nov, Berlin 31 Mar and
# 27 Oct, Lord Howe 7 Apr and 6 Oct 2024), a quiet stretch, and a year boundary.
ANCHORS = (
    datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 25, tzinfo=UTC),
    datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 9, 30, tzinfo=UTC),
    datetime(2024, 10, 22, tzinfo=UTC), datetime(2024, 6, 10, tzinfo=UTC),
    datetime(2023, 12, 24, tzinfo=UTC),
)
SPAN_MINUTES = 14 * 24 * 60
TOLERANCE = 1e-6  # minutes; results are rounded to the microsecond (1.7e-8 minutes)


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


OFFICE = Calendar.office()


# --- worked examples -------------------------------------------------------------------------

def test_friday_afternoon_plus_an_hour_lands_on_monday_morning() -> None:
    friday = _utc(2024, 6, 14, 16, 30)
    assert add_business_minutes(friday, 60, OFFICE) == _utc(2024, 6, 17, 9, 30)


def test_adding_lands_on_the_earliest_instant_at_the_end_of_a_day() -> None:
    assert add_business_minutes(_utc(2024, 6, 14, 16, 30), 30, OFFICE) == _utc(2024, 6, 14, 17)


def test_adding_zero_returns_the_start_even_outside_business_hours() -> None:
    saturday = _utc(2024, 6, 15, 12)
    assert add_business_minutes(saturday, 0, OFFICE) == saturday


def test_start_outside_hours_counts_from_the_next_opening() -> None:
    assert add_business_minutes(_utc(2024, 6, 15, 12), 1, OFFICE) == _utc(2024, 6, 17, 9, 1)


def test_holidays_are_skipped() -> None:
    cal = Calendar.office(holidays=[date(2024, 6, 17), date(2024, 6, 18)])
    assert add_business_minutes(_utc(2024, 6, 14, 16, 30), 60, cal) == _utc(2024, 6, 19, 9, 30)
    assert business_minutes_between(_utc(2024, 6, 17), _utc(2024, 6, 19), cal) == 0.0


def test_always_calendar_counts_every_minute() -> None:
    cal = Calendar.always()
    start = _utc(2024, 2, 28, 23, 59)
    assert add_business_minutes(start, 2 * 1440, cal) == _utc(2024, 3, 1, 23, 59)
    assert business_minutes_between(start, _utc(2024, 3, 1, 23, 59), cal) == 2880.0


def test_always_calendar_in_berlin_has_a_23_and_a_25_hour_day() -> None:
    cal = Calendar.always("Europe/Berlin")
    spring = business_minutes_between(_berlin(2024, 3, 31), _berlin(2024, 4, 1), cal)
    autumn = business_minutes_between(_berlin(2024, 10, 27), _berlin(2024, 10, 28), cal)
    assert (spring, autumn) == (23 * 60.0, 25 * 60.0)


def test_office_day_on_berlin_dst_changes_is_still_eight_hours() -> None:
    cal = Calendar.office("Europe/Berlin", days=range(7))
    for day in (date(2024, 3, 31), date(2024, 10, 27)):
        start = datetime.combine(day, time(0), BERLIN)
        assert business_minutes_between(start, start + timedelta(days=1), cal) == 480.0


def test_window_containing_spring_forward_loses_the_skipped_hour() -> None:
    night = (time(0), time(6))
    cal = Calendar("Europe/Berlin", (night,) * 7)
    assert business_minutes_between(_berlin(2024, 3, 31), _berlin(2024, 3, 31, 12), cal) == 300.0
    # 01:59 CET + 2 minutes: 02:00-03:00 never happens, so the clock reads 03:01 CEST.
    assert add_business_minutes(_berlin(2024, 3, 31, 1, 59), 2, cal) == _berlin(2024, 3, 31, 3, 1)


def test_window_containing_fall_back_counts_the_repeated_hour_twice() -> None:
    night = (time(0), time(6))
    cal = Calendar("Europe/Berlin", (night,) * 7)
    assert business_minutes_between(_berlin(2024, 10, 27), _berlin(2024, 10, 27, 12), cal) == 420.0
    # 02:59 CEST + 2 minutes is 02:01 CET, the second time the wall clock shows 02:01.
    later = add_business_minutes(_berlin(2024, 10, 27, 2, 59), 2, cal)
    assert later == _utc(2024, 10, 27, 1, 1)
    local = later.astimezone(BERLIN)
    assert (local.hour, local.minute, local.fold) == (2, 1, 1)


def test_lord_howe_half_hour_shift_is_counted() -> None:
    cal = Calendar.always("Australia/Lord_Howe")
    zone = ZoneInfo("Australia/Lord_Howe")
    start = datetime(2024, 10, 6, tzinfo=zone)
    assert business_minutes_between(start, start + timedelta(days=1), cal) == 1410.0


def test_a_year_of_office_hours_is_counted_exactly_and_fast() -> None:
    cal = Calendar.office("Europe/Berlin", holidays=[date(2024, 12, 25), date(2024, 12, 29)])
    begun = walltime.perf_counter()
    minutes = business_minutes_between(_berlin(2024, 1, 1), _berlin(2025, 1, 1), cal)
    due = add_business_minutes(_berlin(2024, 1, 1), 100_000, cal)
    elapsed = walltime.perf_counter() - begun
    assert minutes == (262 - 1) * 480.0  # 262 weekdays; 29 December is a Sunday anyway
    assert business_minutes_between(_berlin(2024, 1, 1), due, cal) == 100_000.0
    assert elapsed < 0.5


def test_whole_days_from_midnight_to_midnight_are_counted_exactly() -> None:
    assert business_minutes_between(_utc(2024, 6, 17), _utc(2024, 6, 19), OFFICE) == 960.0
    assert business_minutes_between(_utc(2024, 6, 17), _utc(2024, 6, 17, 12), OFFICE) == 180.0
    always = Calendar.always()
    assert business_minutes_between(_utc(2024, 6, 17), _utc(2024, 6, 18), always) == 1440.0


def test_between_is_zero_when_the_end_is_not_after_the_start() -> None:
    assert business_minutes_between(_utc(2024, 6, 14, 12), _utc(2024, 6, 13, 12), OFFICE) == 0.0
    assert business_minutes_between(_utc(2024, 6, 14, 12), _utc(2024, 6, 14, 12), OFFICE) == 0.0


def test_fractional_minutes_are_kept_to_the_microsecond() -> None:
    due = add_business_minutes(_utc(2024, 6, 14, 9), 0.5, OFFICE)
    assert due == _utc(2024, 6, 14, 9, 0, 30)
    assert business_minutes_between(_utc(2024, 6, 14, 9), due, OFFICE) == 0.5


def test_results_are_utc_whatever_the_input_zone() -> None:
    due = add_business_minutes(_berlin(2024, 6, 14, 10), 30, Calendar.office("Europe/Berlin"))
    assert due.tzinfo is UTC
    assert due == _utc(2024, 6, 14, 8, 30)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        add_business_minutes(datetime(2024, 6, 14, 9), 5, OFFICE)
    with pytest.raises(ValueError, match="naive"):
        business_minutes_between(_utc(2024, 6, 14), datetime(2024, 6, 15), OFFICE)


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf")])
def test_negative_or_non_finite_minutes_are_refused(minutes: float) -> None:
    with pytest.raises(ValueError, match="minutes"):
        add_business_minutes(_utc(2024, 6, 14), minutes, OFFICE)


def test_a_calendar_that_is_never_open_cannot_be_added_to_but_measures_zero() -> None:
    closed = Calendar(hours=(None,) * 7)
    with pytest.raises(ValueError, match="no business hours"):
        add_business_minutes(_utc(2024, 6, 14), 1, closed)
    assert business_minutes_between(_utc(2024, 1, 1), _utc(2025, 1, 1), closed) == 0.0


def test_calendar_defaults_to_always() -> None:
    assert Calendar() == Calendar.always()
    assert Calendar.always().hours == ((time(0), time(0)),) * 7


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timezone": "Mars/Olympus"}, "time zone"),
    ({"hours": ((time(9), time(17)),) * 6}, "7 entries"),
    ({"hours": ((time(17), time(9)),) * 7}, "after start"),
    ({"hours": ((time(9), time(9)),) * 7}, "after start"),
    ({"hours": ((time(9, tzinfo=UTC), time(17)),) * 7}, "naive"),
    ({"holidays": frozenset({datetime(2024, 1, 1)})}, "not a date"),
])
def test_invalid_calendars_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Calendar(**kwargs)  # type: ignore[arg-type]


def test_office_refuses_weekday_numbers_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"0\.\.6"):
        Calendar.office(days=(1, 7))


# --- properties ------------------------------------------------------------------------------

def _window(start: int, end: int) -> tuple[time, time]:
    return (time(start // 60, start % 60), time((end // 60) % 24, end % 60))


windows = st.one_of(
    st.none(),
    st.just((0, 1440)),
    st.integers(0, 1439).flatmap(lambda s: st.tuples(st.just(s), st.integers(s + 1, 1440))),
    st.integers(0, 23).flatmap(lambda h: st.tuples(st.just(60 * h), st.integers(h + 1, 24).map(
        lambda e: 60 * e))),  # whole hours: edges meet midnights and DST changes more often
).map(lambda w: None if w is None else _window(*w))
# Any minute of the fortnight, or a whole half hour (where local midnights fall, Lord Howe's too).
minute_indexes = st.one_of(st.integers(0, SPAN_MINUTES),
                           st.integers(0, SPAN_MINUTES // 30).map(lambda k: 30 * k))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Calendar, datetime]:
    """A random calendar and the UTC anchor of the fortnight it is tested on."""
    anchor = draw(st.sampled_from(ANCHORS))
    first = anchor.date() - timedelta(days=1)
    holidays = draw(st.frozensets(st.integers(0, 16).map(lambda n: first + timedelta(days=n)),
                                  max_size=4))
    hours = tuple(draw(windows) for _ in range(7))
    return Calendar(draw(st.sampled_from(ZONES)), hours, holidays), anchor


instants = st.integers(0, SPAN_MINUTES * 60_000_000).map(lambda us: timedelta(microseconds=us))
FAST = settings(max_examples=120, deadline=None)


@cache
def _wall_clock(zone_name: str, base: datetime) -> tuple[datetime, ...]:
    """The local wall-clock reading of each UTC minute of the fortnight from ``base``."""
    zone = ZoneInfo(zone_name)
    return tuple((base + timedelta(minutes=i)).astimezone(zone) for i in range(SPAN_MINUTES))


def _brute_force_flags(cal: Calendar, base: datetime) -> list[bool]:
    """Whether each UTC minute from ``base`` is business time, read off the local clock."""
    flags = []
    for local in _wall_clock(cal.timezone, base):
        window = cal.hours[local.weekday()]
        flags.append(window is not None and local.date() not in cal.holidays
                     and window[0] <= local.time()
                     and (window[1] == time(0) or local.time() < window[1]))
    return flags


@settings(max_examples=120, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_agrees_with_a_minute_by_minute_scan(scenario: tuple[Calendar, datetime],
                                             data: st.DataObject) -> None:
    cal, base = scenario
    flags = _brute_force_flags(cal, base)
    before = [0, *accumulate(flags)]  # before[i]: business minutes in [base, base + i)
    i = data.draw(minute_indexes, label="start minute")
    j = data.draw(minute_indexes, label="end minute")
    a, b = base + timedelta(minutes=i), base + timedelta(minutes=j)
    assert business_minutes_between(a, b, cal) == max(0, before[j] - before[i])

    m = data.draw(st.integers(0, before[-1] - before[i]), label="minutes to add")
    expected = a if m == 0 else base + timedelta(minutes=before.index(before[i] + m))
    assert add_business_minutes(a, m, cal) == expected


@FAST
@given(scenario=scenarios(), da=instants, db=instants, m=st.floats(0, 20_000))
def test_adding_is_monotonic_in_the_start(scenario: tuple[Calendar, datetime], da: timedelta,
                                          db: timedelta, m: float) -> None:
    cal, base = scenario
    a, b = sorted((base + da, base + db))
    if cal.hours != (None,) * 7:
        assert add_business_minutes(a, m, cal) <= add_business_minutes(b, m, cal)


@FAST
@given(scenario=scenarios(), d=instants, m1=st.floats(0, 20_000), m2=st.floats(0, 20_000))
def test_adding_is_monotonic_in_the_minutes(scenario: tuple[Calendar, datetime], d: timedelta,
                                            m1: float, m2: float) -> None:
    cal, base = scenario
    small, large = sorted((m1, m2))
    if cal.hours != (None,) * 7:
        assert add_business_minutes(base + d, small, cal) <= add_business_minutes(
            base + d, large, cal)


@FAST
@given(scenario=scenarios(), d=instants, m=st.floats(0, 20_000))
def test_measuring_what_was_added_gives_it_back_at_the_earliest_instant(
        scenario: tuple[Calendar, datetime], d: timedelta, m: float) -> None:
    cal, base = scenario
    if cal.hours == (None,) * 7:
        return
    a = base + d
    due = add_business_minutes(a, m, cal)
    assert business_minutes_between(a, due, cal) == pytest.approx(m, abs=TOLERANCE)
    if due > a:  # one microsecond earlier is not enough yet
        assert business_minutes_between(a, due - timedelta(microseconds=1), cal) < m


@FAST
@given(scenario=scenarios(), d1=instants, d2=instants, d3=instants)
def test_measuring_is_additive_over_a_split(scenario: tuple[Calendar, datetime],
                                            d1: timedelta, d2: timedelta, d3: timedelta) -> None:
    cal, base = scenario
    a, b, c = sorted((base + d1, base + d2, base + d3))
    whole = business_minutes_between(a, c, cal)
    parts = business_minutes_between(a, b, cal) + business_minutes_between(b, c, cal)
    assert whole == pytest.approx(parts, abs=TOLERANCE)
    assert 0.0 <= whole <= (c - a) / timedelta(minutes=1) + TOLERANCE


@settings(max_examples=40, deadline=None)
@given(scenario=scenarios(), d=instants, weeks=st.integers(1, 150))
def test_long_spans_agree_with_walking_week_by_week(scenario: tuple[Calendar, datetime],
                                                    d: timedelta, weeks: int) -> None:
    cal, base = scenario
    a = base + d
    steps = [a + timedelta(weeks=k) for k in range(weeks + 1)]
    walked = sum(business_minutes_between(x, y, cal) for x, y in pairwise(steps))
    assert business_minutes_between(a, steps[-1], cal) == pytest.approx(walked, abs=TOLERANCE)
    if walked > 0:
        due = add_business_minutes(a, walked, cal)
        assert due <= steps[-1]
        assert business_minutes_between(a, due, cal) == pytest.approx(walked, abs=TOLERANCE)
