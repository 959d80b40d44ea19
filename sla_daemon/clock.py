"""Business-time arithmetic: add and measure business minutes on a calendar, across DST.

The one definition everything here follows: an instant is *business time* under a
:class:`Calendar` when, read on the calendar's wall clock (``instant.astimezone(zone)``), its
local date is not a holiday and its local time of day lies in that weekday's window
``[start, end)``. Business minutes between two instants are the real elapsed minutes of
business time between them. Consequences, all deliberate:

* A 09:00-17:00 day is the real time between the local 09:00 and 17:00 instants: 8 hours on
  DST-change days too, since zones change at night. A window that contains the change is an
  hour shorter (spring forward: the skipped wall-clock hour never happens) or longer (fall
  back: the repeated hour happens twice and counts twice).
* ``Calendar.always()`` is every instant, so 23- and 25-hour days count as such.
* The results equal a brute-force scan over instants (the property tests check exactly
  that), but they are computed per constant-offset stretch of the zone and per day, with
  whole weeks in one step: a year costs a few hundred operations, not half a million.

Everything is pure: no I/O, no ``now()``. Instants are aware datetimes (naive ones raise
``ValueError``); results are UTC with microsecond resolution (minutes are rounded to the
microsecond). Internally instants are integer microseconds, so sums are exact.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

__all__ = ["Calendar", "Window", "add_business_minutes", "business_minutes_between"]

Window = tuple[time, time]
"""A day's business hours ``(start, end)``, naive local times; ``end == time(0)`` is 24:00."""

_US_PER_SECOND = 1_000_000
_US_PER_MINUTE = 60 * _US_PER_SECOND
_DAY_US = 86_400 * _US_PER_SECOND
_WEEK_DAYS = 7
_MIDNIGHT = time(0)
_ALL_DAY: Window = (_MIDNIGHT, _MIDNIGHT)


@dataclass(frozen=True)
class Calendar:
    """When SLA clocks run: weekly wall-clock windows in one time zone, minus holidays.

    Attributes:
        timezone: IANA zone name (``zoneinfo``) that windows and holidays are read in.
        hours: seven entries, Monday first; each is ``None`` (closed all day) or a window
            ``(start, end)`` of naive local times with ``start < end``, where ``end ==
            time(0)`` means 24:00, so ``(time(0), time(0))`` is the whole day. A window never
            crosses midnight: an overnight shift is two windows on two weekdays. The default
            is open all week, the same as :meth:`always`.
        holidays: local dates that are closed all day.

    Raises:
        ValueError: unknown time zone, not seven entries, a window with an aware time or
            with ``end <= start`` (other than ``end == 00:00``), or a holiday that is not a
            plain date.
    """

    timezone: str = "UTC"
    hours: tuple[Window | None, ...] = (_ALL_DAY,) * _WEEK_DAYS
    holidays: frozenset[date] = frozenset()
    # Derived once, in integer microseconds from local midnight; excluded from eq/hash.
    _bounds: tuple[tuple[int, int] | None, ...] = field(init=False, repr=False, compare=False)
    _day_us: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _week_us: int = field(init=False, repr=False, compare=False)
    _holiday_days: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        hours = tuple(self.hours)
        if len(hours) != _WEEK_DAYS:
            raise ValueError(f"hours needs 7 entries (Monday first), got {len(hours)}")
        bounds = tuple(None if w is None else _window_bounds(w, day) for day, w in
                       enumerate(hours))
        holidays = frozenset(self.holidays)
        for h in holidays:
            if isinstance(h, datetime) or not isinstance(h, date):
                raise ValueError(f"holiday {h!r} is not a date")
        day_us = tuple(0 if b is None else b[1] - b[0] for b in bounds)
        object.__setattr__(self, "hours", hours)
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "_bounds", bounds)
        object.__setattr__(self, "_day_us", day_us)
        object.__setattr__(self, "_week_us", sum(day_us))
        object.__setattr__(self, "_holiday_days", tuple(sorted(h.toordinal() - 1
                                                               for h in holidays)))

    @classmethod
    def always(cls, timezone: str = "UTC") -> Calendar:
        """Return the 24x7 calendar: every instant is business time, DST days included."""
        return cls(timezone=timezone)

    @classmethod
    def office(cls, timezone: str = "UTC", start: time = time(9), end: time = time(17),
               days: Iterable[int] = (0, 1, 2, 3, 4),
               holidays: Iterable[date] = ()) -> Calendar:
        """Return the same window on each of ``days`` (0=Monday..6=Sunday), closed otherwise.

        Raises:
            ValueError: a day outside 0..6, or any reason :class:`Calendar` gives.
        """
        open_days = set(days)
        if not open_days <= set(range(_WEEK_DAYS)):
            raise ValueError(f"days must be weekday numbers 0..6, got {sorted(open_days)}")
        hours = tuple((start, end) if d in open_days else None for d in range(_WEEK_DAYS))
        return cls(timezone=timezone, hours=hours, holidays=frozenset(holidays))

    # Naive local time below is integer microseconds since 0001-01-01 00:00, day n = that
    # many days later, whose weekday is n % 7 (0001-01-01 was a Monday).

    def _day_measure(self, n: int) -> int:
        return 0 if self._is_holiday(n) else self._day_us[n % _WEEK_DAYS]

    def _is_holiday(self, n: int) -> bool:
        i = bisect_left(self._holiday_days, n)
        return i < len(self._holiday_days) and self._holiday_days[i] == n

    def _clip(self, n: int, t0: int, t1: int) -> int:
        """Business microseconds of day ``n`` between times of day ``t0`` and ``t1``."""
        b = self._bounds[n % _WEEK_DAYS]
        if b is None or self._is_holiday(n):
            return 0
        return max(0, min(b[1], t1) - max(b[0], t0))

    def _full_days(self, n0: int, n1: int) -> int:
        """Business microseconds of the whole days ``[n0, n1)``: weeks at once, then days."""
        weeks, extra = divmod(n1 - n0, _WEEK_DAYS)
        total = weeks * self._week_us
        total += sum(self._day_us[(n0 + i) % _WEEK_DAYS] for i in range(extra))
        return total - self._holiday_us(n0, n1)

    def _holiday_us(self, n0: int, n1: int) -> int:
        lo = bisect_left(self._holiday_days, n0)
        hi = bisect_left(self._holiday_days, n1)
        return sum(self._day_us[h % _WEEK_DAYS] for h in self._holiday_days[lo:hi])

    def _measure_local(self, a: int, b: int) -> int:
        """Business microseconds in the naive local span ``[a, b)``."""
        if b <= a:
            return 0
        na, ta = divmod(a, _DAY_US)
        nb, tb = divmod(b, _DAY_US)
        if na == nb:
            return self._clip(na, ta, tb)
        return (self._clip(na, ta, _DAY_US) + self._full_days(na + 1, nb)
                + self._clip(nb, 0, tb))

    def _advance_local(self, a: int, amount: int) -> int:
        """Return the earliest naive local ``b`` with ``_measure_local(a, b) == amount``.

        ``amount`` > 0 and the week has business time, else this would not end.
        """
        n, t = divmod(a, _DAY_US)
        avail = self._clip(n, t, _DAY_US)
        if amount <= avail:
            return n * _DAY_US + max(self._window_start(n), t) + amount
        amount -= avail
        n += 1
        # Whole weeks, keeping at least one microsecond for the day walk below. Holidays
        # give time back, so the loop may run again; it ends once past the last holiday.
        while (weeks := (amount - 1) // self._week_us) > 0:
            end = n + weeks * _WEEK_DAYS
            amount -= weeks * self._week_us - self._holiday_us(n, end)
            n = end
        while amount > (avail := self._day_measure(n)):
            amount -= avail
            n += 1
        return n * _DAY_US + self._window_start(n) + amount

    def _window_start(self, n: int) -> int:
        b = self._bounds[n % _WEEK_DAYS]
        assert b is not None, "only called for a day with business time"
        return b[0]


def add_business_minutes(start: datetime, minutes: float, cal: Calendar) -> datetime:
    """Return the earliest instant at which ``minutes`` business minutes have passed.

    Earliest matters at the edges: Friday 16:30 plus 30 minutes on a 09-17 calendar is
    Friday 17:00, not Monday 09:00. Adding 0 returns ``start`` itself (in UTC), even
    outside business hours: a zero target is due at once.

    Args:
        start: aware instant to count from.
        minutes: business minutes to add, >= 0, int or float (rounded to the microsecond).
        cal: the calendar.

    Returns:
        An aware UTC datetime ``r`` with ``business_minutes_between(start, r, cal)`` equal
        to ``minutes`` (to the microsecond).

    Raises:
        ValueError: ``start`` is naive, ``minutes`` is negative or not finite, or the
            calendar has no business hours at all and ``minutes > 0``.
        OverflowError: the result would lie beyond year 9999.
    """
    x = _utc_us(start)
    amount = _minutes_to_us(minutes)
    if amount == 0:
        return _utc_datetime(x)
    if cal._week_us == 0:
        raise ValueError("calendar has no business hours: the clock would never run")
    for seg_start, seg_end, offset in _segments(cal.timezone, x):
        avail = cal._measure_local(seg_start + offset, seg_end + offset)
        if amount <= avail:
            return _utc_datetime(cal._advance_local(seg_start + offset, amount) - offset)
        amount -= avail
    raise OverflowError("adding business minutes runs past year 9999")


def business_minutes_between(a: datetime, b: datetime, cal: Calendar) -> float:
    """Return the business minutes in ``[a, b)``: exact, and 0.0 when ``b <= a``.

    Never negative, so accumulating it can never move a clock backwards, and additive:
    ``between(a, c) == between(a, b) + between(b, c)`` for ``a <= b <= c``.

    Raises:
        ValueError: ``a`` or ``b`` is naive.
    """
    x, y = _utc_us(a), _utc_us(b)
    if y <= x:
        return 0.0
    total = 0
    for seg_start, seg_end, offset in _segments(cal.timezone, x):
        total += cal._measure_local(seg_start + offset, min(seg_end, y) + offset)
        if seg_end >= y:
            break
    return total / _US_PER_MINUTE


def _window_bounds(window: Sequence[time], day: int) -> tuple[int, int]:
    if len(window) != 2 or not all(isinstance(t, time) for t in window):
        raise ValueError(f"hours[{day}] must be (start, end) times, got {window!r}")
    start, end = window
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError(f"hours[{day}] must use naive local times, got {window!r}")
    s, e = _time_us(start), _time_us(end)
    if e == 0:
        e = _DAY_US
    if e <= s:
        raise ValueError(f"hours[{day}]: end {end} must be after start {start} "
                         "(use 00:00 for midnight; windows cannot cross midnight)")
    return s, e


def _time_us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US_PER_SECOND + t.microsecond


def _naive_us(dt: datetime) -> int:
    return (dt.toordinal() - 1) * _DAY_US + _time_us(dt.time())


def _utc_us(dt: datetime) -> int:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()}: pass an aware instant")
    return _naive_us(dt.astimezone(UTC).replace(tzinfo=None))


def _utc_datetime(us: int) -> datetime:
    return (datetime.min + timedelta(microseconds=us)).replace(tzinfo=UTC)


def _minutes_to_us(minutes: float) -> int:
    if not math.isfinite(minutes) or minutes < 0:
        raise ValueError(f"minutes must be finite and >= 0, got {minutes!r}")
    if isinstance(minutes, int):
        return minutes * _US_PER_MINUTE
    return round(minutes * _US_PER_MINUTE)


def _segments(key: str, x: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(start, end, offset)`` UTC spans of one UTC offset, covering ``[x, ...)``.

    Spans also end at each UTC new year (where the per-year tables meet), which is
    harmless: callers sum over spans.
    """
    year = _utc_datetime(x).year
    while year <= datetime.max.year:
        start_offset, times, offsets = _year_table(key, year)
        year_end = _year_start_us(year + 1)
        i = bisect_right(times, x)
        offset = offsets[i - 1] if i else start_offset
        for t, next_offset in zip(times[i:], offsets[i:], strict=True):
            yield x, t, offset
            x, offset = t, next_offset
        yield x, year_end, offset
        x = year_end
        year += 1


def _year_start_us(year: int) -> int:
    if year > datetime.max.year:
        return _naive_us(datetime.max) + 1
    return _naive_us(datetime(year, 1, 1))


@lru_cache(maxsize=4096)
def _year_table(key: str, year: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Return the UTC offset at the year's start and the offset changes within the year.

    ``zoneinfo`` does not expose transitions, so the year is sampled once per UTC day and
    each change found is pinned to the second by bisection (tzdata transitions fall on
    whole seconds, and no two lie within a day of each other: the closest pair in tzdata
    is about four days apart). Times are UTC microseconds since 0001-01-01.
    """
    zone = ZoneInfo(key)
    day, second = timedelta(days=1), timedelta(seconds=1)

    def offset_at(instant: datetime) -> timedelta | None:
        return instant.astimezone(zone).utcoffset()

    first = _utc_datetime(_year_start_us(year))
    last = _utc_datetime(_year_start_us(year + 1)) - second
    probes = [first + k * day for k in range((last - first) // day + 1)]
    if probes[-1] != last:
        probes.append(last)
    start_offset = current = offset_at(first)
    times: list[datetime] = []
    offsets: list[timedelta | None] = []
    for lo, hi in pairwise(probes):
        while offset_at(hi) != current:  # a change in (lo, hi]: pin it, then look again
            left, right = lo, hi
            while right - left > second:  # offset_at(left) == current != offset_at(right)
                mid = left + (right - left) // 2
                mid -= timedelta(microseconds=mid.microsecond)
                if offset_at(mid) == current:
                    left = mid
                else:
                    right = mid
            current = offset_at(right)
            times.append(right)
            offsets.append(current)
            lo = right
    return (_offset_us(start_offset), tuple(_naive_us(t.replace(tzinfo=None)) for t in times),
            tuple(_offset_us(o) for o in offsets))


def _offset_us(offset: timedelta | None) -> int:
    assert offset is not None, "zoneinfo always has an offset"
    return offset // timedelta(microseconds=1)
