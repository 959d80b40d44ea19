"""SLA policies and clocks: which targets apply to a ticket, and where each of its clocks stands.

Everything here is pure. A :class:`Policy` (calendar, targets per priority, pause statuses,
optional organization/category conditions) is built from one ``[[sla.policies]]`` table of
the config, as a dict or as ``helpdesk.config.SlaPolicySettings``; the keys are those of
``SlaPolicySettings`` (``name``, ``default``, ``timezone``, ``always``, ``days``, ``start``,
``end`` (``"24:00"`` ends the day), ``holidays``, ``pause_statuses``,
``first_response_minutes`` / ``resolution_minutes`` as priority -> minutes (a missing
priority has no such clock), ``organizations``, ``categories``). A :class:`ClockState` is one
clock of one ticket, moved by ``start`` / ``pause`` / ``resume`` / ``meet`` / ``retarget`` at
explicit instants; it lives in :mod:`sla_daemon._clock_state` (one concept a module) and is
re-exported here, so callers keep one import for policies and clocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any, Literal

from helpdesk.config import Settings
from helpdesk.errors import ConfigError
from sla_daemon._clock_state import (
    WARN_FRACTION,
    ClockEvent,
    ClockState,
    ClockStateName,
    clock_state_name,
    due_at,
    elapsed_at,
    fire_events,
    meet,
    next_event_at,
    pause,
    resume,
    retarget,
    start,
    warn_at,
)
from sla_daemon.clock import Calendar

__all__ = [
    "DEFAULT_TARGETS", "WARN_FRACTION", "ClockEvent", "ClockState", "ClockStateName", "Policy",
    "Targets", "check_policies", "choose_policy", "clock_state_name", "default_policy",
    "due_at", "elapsed_at", "fire_events", "meet", "next_event_at", "pause",
    "policies_from_settings", "policy_from_dict", "resume", "retarget", "start", "warn_at",
]

ClockKind = Literal["first_response", "resolution"]


@dataclass(frozen=True)
class Targets:
    """Business-minute targets of one priority; ``None`` means that clock does not run."""

    first_response_minutes: int | None = None
    resolution_minutes: int | None = None

    def __post_init__(self) -> None:
        for name in ("first_response_minutes", "resolution_minutes"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name}: must be a whole number >= 0, got {value!r}")


DEFAULT_TARGETS: Mapping[str, Targets] = MappingProxyType({
    "low": Targets(480, 4800),
    "normal": Targets(240, 2400),
    "high": Targets(120, 960),
    "urgent": Targets(60, 480),
    "critical": Targets(30, 240),
})


@dataclass(frozen=True)
class Policy:
    """One SLA policy. Empty conditions (organizations, categories) match anything.

    Priorities and pause statuses are stored lower-cased and looked up case-insensitively.
    ``pause_statuses`` of ``None`` defers to the ticket statuses whose class is "paused"
    (:func:`policies_from_settings` resolves it, so its policies never hold ``None``).
    """

    name: str
    is_default: bool
    calendar: Calendar
    targets: Mapping[str, Targets] = field(hash=False)
    pause_statuses: frozenset[str] | None = None
    organizations: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", MappingProxyType(
            {p.lower(): t for p, t in self.targets.items()}))
        if self.pause_statuses is not None:
            object.__setattr__(self, "pause_statuses",
                               frozenset(s.lower() for s in self.pause_statuses))

    @property
    def has_conditions(self) -> bool:
        """Whether the policy is limited to some organizations or categories."""
        return bool(self.organizations or self.categories)

    def matches(self, organization: str | Sequence[str] | None, category: str | None) -> bool:
        """Whether this conditional policy applies (an unconditional one never "matches").

        Args:
            organization: the ticket's organization, or several names for it (domain and
                display name); any one of them may satisfy the condition.
            category: the ticket's category.
        """
        names = [organization] if isinstance(organization, str) else list(organization or ())
        return self.has_conditions and _within(names, self.organizations) and _within(
            [category] if category else [], self.categories)

    def targets_for(self, priority: str) -> Targets:
        """Return the targets of ``priority``; an unknown priority has no clocks."""
        return self.targets.get(priority.lower(), Targets())

    def target(self, kind: ClockKind | str, priority: str) -> int | None:
        """Return the target minutes of clock ``kind`` for ``priority``, None if it has none.

        Raises:
            ValueError: ``kind`` is neither "first_response" nor "resolution".
        """
        targets = self.targets_for(priority)
        if kind == "first_response":
            return targets.first_response_minutes
        if kind == "resolution":
            return targets.resolution_minutes
        raise ValueError(f"unknown SLA clock {kind!r}")

    def pauses(self, status: str, paused_class: frozenset[str]) -> bool:
        """Whether clocks stop in ``status``; ``paused_class`` is used when ours is None."""
        statuses = paused_class if self.pause_statuses is None else self.pause_statuses
        return status.lower() in {s.lower() for s in statuses}

    def describe(self) -> dict[str, Any]:
        """Return a JSON-safe summary (``helpdesk sla policies``): hours Monday first."""
        return {
            "name": self.name, "default": self.is_default, "timezone": self.calendar.timezone,
            "hours": [None if w is None else [_clock(w[0]), _clock(w[1], end=True)]
                      for w in self.calendar.hours],
            "holidays": sorted(h.isoformat() for h in self.calendar.holidays),
            "pause_statuses": None if self.pause_statuses is None else sorted(
                self.pause_statuses),
            **{f"{kind}_minutes": {p: m for p in self.targets
                                   if (m := self.target(kind, p)) is not None}
               for kind in ("first_response", "resolution")},
            "organizations": sorted(self.organizations),
            "categories": sorted(self.categories),
        }


def _within(values: Sequence[str], allowed: frozenset[str]) -> bool:
    if not allowed:
        return True
    wanted = {a.casefold() for a in allowed}
    return any(v.casefold() in wanted for v in values if v)


def default_policy(source: str | Settings = "UTC") -> Policy:
    """Return the built-in policy "default": Mon-Fri 09:00-17:00, DEFAULT_TARGETS.

    Args:
        source: the time zone; or the settings, whose instance time zone and "paused"
            statuses it then uses.
    """
    if isinstance(source, str):
        return Policy("default", True, Calendar.office(source), DEFAULT_TARGETS)
    return Policy("default", True, Calendar.office(source.instance.timezone), DEFAULT_TARGETS,
                  pause_statuses=_paused_class(source))


def choose_policy(policies: Sequence[Policy], *, organization: str | Sequence[str] | None,
                  category: str | None, fallback: Policy | None = None) -> Policy:
    """Return the first matching conditional policy, else the first default one, else fallback.

    Order is the configured order, so narrower policies go first. Without ``fallback`` the
    last resort is ``default_policy()``.
    """
    for policy in policies:
        if policy.matches(organization, category):
            return policy
    return next((p for p in policies if p.is_default), None) or fallback or default_policy()


def check_policies(policies: Sequence[Policy]) -> None:
    """Refuse a policy list with a mistake that would silently change which policy applies.

    Raises:
        ValueError: duplicate names, more than one default, or a non-default policy without
            conditions (it could never be chosen).
    """
    seen: set[str] = set()
    for p in policies:
        if p.name in seen:
            raise ValueError(f"sla.policies {p.name!r}: name: used twice")
        seen.add(p.name)
        if not p.is_default and not p.has_conditions:
            raise ValueError(f"sla.policies {p.name!r}: organizations/categories: a policy "
                             "that is not the default needs a condition, else it never applies")
    if sum(p.is_default for p in policies) > 1:
        raise ValueError("sla.policies: default: more than one default policy")


# --- from the config -------------------------------------------------------------------------

_KEYS = frozenset({"name", "default", "timezone", "always", "days", "start", "end", "holidays",
                   "pause_statuses", "first_response_minutes", "resolution_minutes",
                   "organizations", "categories"})


def policies_from_settings(settings: Settings) -> tuple[Policy, ...]:
    """Return the configured policies in order, or just the built-in default when none are.

    A policy without a time zone takes the instance's; without pause statuses, the statuses
    of the "paused" class.

    Raises:
        ConfigError: naming the policy and the key, for the first invalid policy.
    """
    if not settings.sla.policies:
        return (default_policy(settings),)
    try:
        policies = tuple(policy_from_dict(
            dataclasses.asdict(p), timezone=settings.instance.timezone,
            paused_statuses=_paused_class(settings)) for p in settings.sla.policies)
        check_policies(policies)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return policies


def policy_from_dict(d: Mapping[str, Any], *, timezone: str = "UTC",
                     paused_statuses: frozenset[str] | None = None) -> Policy:
    """Build a policy from one ``[[sla.policies]]`` table (keys: module docstring).

    Args:
        d: the table, TOML values (dates and times may be TOML's or ISO strings).
        timezone: the zone when ``d`` has none (or an empty one).
        paused_statuses: the statuses when ``d`` has none; ``None`` keeps it deferred.

    Raises:
        ValueError: ``sla.policies '<name>': <key>: <what is wrong>``.
    """
    where = f"sla.policies {d.get('name', '?')!r}"

    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{where}: {key}: {why}")

    def text(key: str, default: str) -> str:
        value = d.get(key, default)
        if not isinstance(value, str | time):
            raise bad(key, f"expected HH:MM, got {value!r}")
        return value if isinstance(value, str) else value.isoformat()

    for key in d:
        if key not in _KEYS:
            raise bad(key, "unknown key")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise bad("name", "a non-empty string is required")
    for key in ("default", "always"):
        if not isinstance(d.get(key, False), bool):
            raise bad(key, "expected true or false")
    zone = d.get("timezone") or timezone
    days = d.get("days", (0, 1, 2, 3, 4))
    if not isinstance(days, list | tuple) or not all(
            type(x) is int and 0 <= x <= 6 for x in days):
        raise bad("days", f"expected weekday numbers 0 (Monday) to 6, got {days!r}")
    start, end = _time_from(text("start", "09:00")), _time_from(text("end", "17:00"))
    if start is None or end is None:
        raise bad("start" if start is None else "end", "expected HH:MM")
    if end != time(0) and end <= start:
        raise bad("end", f"must be after start (24:00 ends the day), got {end} <= {start}")
    try:
        holidays = [date.fromisoformat(h) if isinstance(h, str) else _plain_date(h)
                    for h in _strings(d, "holidays", bad, of=(str, date))]
    except ValueError:
        raise bad("holidays", f"expected dates YYYY-MM-DD, got {d['holidays']!r}") from None
    try:
        calendar = (Calendar.always(zone) if d.get("always") else
                    Calendar.office(zone, start, end, days, holidays))
    except ValueError as exc:
        raise bad("timezone", str(exc)) from None
    targets = _targets_from(d, bad)
    pause = frozenset(_strings(d, "pause_statuses", bad)) or paused_statuses
    return Policy(name, d.get("default", False), calendar, targets, pause,
                  frozenset(_strings(d, "organizations", bad)),
                  frozenset(_strings(d, "categories", bad)))


def _paused_class(settings: Settings) -> frozenset[str]:
    return frozenset(s.name.lower() for s in settings.tickets.statuses
                     if s.status_class == "paused")


def _strings(d: Mapping[str, Any], key: str, bad: Callable[[str, str], ValueError],
             of: tuple[type, ...] = (str,)) -> list[Any]:
    value = d.get(key, ())
    if not isinstance(value, list | tuple) or not all(
            isinstance(v, of) and v != "" for v in value):
        raise bad(key, f"expected a list of non-empty strings, got {value!r}")
    return list(value)


def _plain_date(value: date) -> date:
    if isinstance(value, datetime):
        raise ValueError("a date and time, not a date")
    return value


def _time_from(text: str) -> time | None:
    """Parse a local "HH:MM[:SS]", "24:00" meaning the end of the day; None if it is not one."""
    if text in ("24:00", "24:00:00"):
        return time(0)
    try:
        parsed = time.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is None else None


def _targets_from(d: Mapping[str, Any],
                  bad: Callable[[str, str], ValueError]) -> Mapping[str, Targets]:
    tables: dict[str, Mapping[str, Any]] = {}
    for key in ("first_response_minutes", "resolution_minutes"):
        table = d.get(key, {})
        if not isinstance(table, Mapping) or not all(
                type(v) is int and v >= 0 for v in table.values()):
            raise bad(key, f"expected priority = whole minutes >= 0, got {table!r}")
        tables[key] = {str(p).lower(): v for p, v in table.items()}
    priorities = [*tables["first_response_minutes"], *tables["resolution_minutes"]]
    return {p: Targets(*(tables[k].get(p) for k in tables)) for p in dict.fromkeys(priorities)}


def _clock(t: time, *, end: bool = False) -> str:
    if end and t == time(0):
        return "24:00"
    return t.isoformat(timespec="seconds" if t.second or t.microsecond else "minutes")
