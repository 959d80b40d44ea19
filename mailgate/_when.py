"""Read the durations and due dates agents type in ``#time`` and ``#due`` commands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal

DUE_DEFAULT_TIME = time(17, 0)
"""Local time a bare ``#due YYYY-MM-DD`` means: the end of that business day."""

_RELATIVE_DUE_RE = re.compile(r"\+([0-9]{1,7})([dhm])", re.IGNORECASE)
_ABSOLUTE_DUE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2}))?", re.IGNORECASE
)
_CLOCK_DURATION_RE = re.compile(r"([0-9]{1,4}):([0-5][0-9])")
_UNIT_DURATION_RE = re.compile(
    r"(?:(?P<h>[0-9]{1,6}(?:[.,][0-9]{1,6})?)\s*h(?:(?:ou)?rs?)?)?\s*"
    r"(?:(?P<m>[0-9]{1,6}(?:[.,][0-9]{1,6})?)\s*(?P<munit>m(?:in(?:ute)?s?)?)?)?",
    re.IGNORECASE,
)


def parse_duration_minutes(text: str) -> int | None:
    """Read a time-tracking duration as whole minutes.

    Accepted: ``45m``, ``45min``, ``1h``, ``2 hours``, ``1h30m``, ``1h30``, ``1.5h``
    (``1,5h``), ``1:30`` and a bare integer meaning minutes (``90``). Fractions round half up
    to the minute. A bare number with a fraction is refused, since it is unclear whether it
    means hours or minutes.

    Args:
        text: the duration as typed; surrounding whitespace and case do not matter.

    Returns:
        The minutes (possibly 0), or None when the text is not a duration.
    """
    value = text.strip()
    clock = _CLOCK_DURATION_RE.fullmatch(value)
    if clock:
        return int(clock.group(1)) * 60 + int(clock.group(2))
    match = _UNIT_DURATION_RE.fullmatch(value)
    if match is None or not (match.group("h") or match.group("m")):
        return None
    hours, minutes = match.group("h"), match.group("m")
    bare = hours is None and match.group("munit") is None
    if bare and minutes is not None and not minutes.isdigit():
        return None
    total = Decimal(0)
    if hours:
        total += Decimal(hours.replace(",", ".")) * 60
    if minutes:
        total += Decimal(minutes.replace(",", "."))
    return int(total.to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class RelativeDue:
    """``+N`` days, hours or minutes from now."""

    amount: int
    unit: str  # "d", "h" or "m"

    @property
    def minutes(self) -> int:
        return self.amount * {"d": 1440, "h": 60, "m": 1}[self.unit]


@dataclass(frozen=True)
class AbsoluteDue:
    """A calendar day, with a local time of day when one was given."""

    day: date
    at: time | None


def parse_due_text(text: str) -> RelativeDue | AbsoluteDue | None:
    """Read a ``#due`` argument without resolving it; None when it is not one."""
    value = text.strip()
    relative = _RELATIVE_DUE_RE.fullmatch(value)
    if relative:
        return RelativeDue(int(relative.group(1)), relative.group(2).lower())
    absolute = _ABSOLUTE_DUE_RE.fullmatch(value)
    if absolute is None:
        return None
    year, month, day, hour, minute = absolute.groups()
    try:
        when = date(int(year), int(month), int(day))
        at = time(int(hour), int(minute)) if hour is not None else None
    except ValueError:
        return None
    return AbsoluteDue(when, at)


def parse_due(text: str, now: datetime, tz: tzinfo) -> datetime | None:
    """Turn a ``#due`` argument into an instant.

    ``+Nh`` and ``+Nm`` add elapsed time to ``now``. ``+Nd`` adds calendar days on the
    wall clock of ``tz``, so ``+1d`` at 10:00 is 10:00 the next day across a DST change.
    A date alone means :data:`DUE_DEFAULT_TIME` (17:00) local time in ``tz``, the end of
    that business day; ``YYYY-MM-DDTHH:MM`` is that local time in ``tz``. A local time that
    falls in a DST gap or fold resolves the way :mod:`zoneinfo` does with ``fold=0``.
    Whether the instant lies in the past is the caller's call.

    Args:
        text: the argument as typed or as normalised by
            :func:`mailgate.commands.parse_commands`.
        now: the current instant, timezone-aware.
        tz: the time zone local dates and times are read in (the agent's or the desk's).

    Returns:
        An aware datetime in UTC, or None when the text is not a due date or the result
        falls outside the range datetime can represent.

    Raises:
        ValueError: when ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    due = parse_due_text(text)
    try:
        if isinstance(due, RelativeDue):
            if due.unit == "d":
                return (now.astimezone(tz) + timedelta(days=due.amount)).astimezone(UTC)
            return now.astimezone(UTC) + timedelta(minutes=due.minutes)
        if isinstance(due, AbsoluteDue):
            local = datetime.combine(due.day, due.at or DUE_DEFAULT_TIME, tzinfo=tz)
            return local.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return None
