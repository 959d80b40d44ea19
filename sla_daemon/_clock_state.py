"""One SLA clock of one ticket as a value, and its pure transitions at explicit instants.

Split from :mod:`sla_daemon.policy` so that module is about which targets apply and this one
about where a clock stands; callers import both through :mod:`sla_daemon.policy`. Business time
comes from :mod:`sla_daemon.clock`. ``fire_events`` at ``next_event_at`` always fires
something, so a daemon waking then never spins without progress.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sla_daemon.clock import Calendar, add_business_minutes, business_minutes_between

ClockStateName = Literal["on_track", "warning", "breached", "paused", "met"]
ClockEvent = Literal["warning", "breached"]
WARN_FRACTION = 0.8
# Deadlines are rounded to the microsecond, so a clock read at its own deadline may fall
# short of the threshold by rounding; this slack (60 us) makes "at the deadline" count.
_SLACK_MINUTES = 1e-6


@dataclass(frozen=True)
class ClockState:
    """One SLA clock, as stored: business minutes counted so far and whether it runs now.

    While running, the elapsed time is ``elapsed_minutes`` plus the business minutes since
    ``running_since``; paused (``running_since is None``) it is ``elapsed_minutes``. A met
    clock is frozen. ``warned`` / ``breached`` record alerts already fired. A clock that was
    never started reads as paused.
    """

    target_minutes: float | None
    elapsed_minutes: float = 0.0
    running_since: datetime | None = None
    met_at: datetime | None = None
    warned: bool = False
    breached: bool = False

    @property
    def is_running(self) -> bool:
        """Whether business time is being counted now."""
        return self.running_since is not None and self.met_at is None


def start(state: ClockState, at: datetime, cal: Calendar) -> ClockState:
    """Return a fresh clock counting from ``at``: elapsed 0, no alerts, keeping the target.

    For a new ticket, or a reopened one whose clock starts over. ``cal`` is unused; every
    transition takes it so callers need not know which ones do.
    """
    _require_aware(at)
    return ClockState(state.target_minutes, running_since=at)


def pause(state: ClockState, at: datetime, cal: Calendar) -> ClockState:
    """Stop counting at ``at``, banking the time so far; no change unless running."""
    if not state.is_running:
        return state
    return dataclasses.replace(state, elapsed_minutes=elapsed_at(state, at, cal),
                               running_since=None)


def resume(state: ClockState, at: datetime, cal: Calendar) -> ClockState:
    """Count again from ``at``; no change when running or met."""
    _require_aware(at)
    if state.is_running or state.met_at is not None:
        return state
    return dataclasses.replace(state, running_since=at)


def meet(state: ClockState, at: datetime, cal: Calendar) -> ClockState:
    """Freeze the clock at ``at`` as met (answered or resolved); the first meeting counts."""
    _require_aware(at)
    if state.met_at is not None:
        return state
    return dataclasses.replace(state, elapsed_minutes=elapsed_at(state, at, cal),
                               running_since=None, met_at=at)


def retarget(state: ClockState, target_minutes: float | None, at: datetime, cal: Calendar,
             fraction: float = WARN_FRACTION) -> ClockState:
    """Apply a new target (priority or policy changed): deadlines follow from elapsed time.

    Alerts already fired stay fired only if the new target is still reached at ``at``; a
    looser target re-arms them, a tighter one makes them due at once.
    """
    elapsed = elapsed_at(state, at, cal)
    reached_warn = target_minutes is not None and _reached(elapsed, fraction * target_minutes)
    reached_due = target_minutes is not None and _reached(elapsed, target_minutes)
    return dataclasses.replace(state, target_minutes=target_minutes,
                               warned=state.warned and reached_warn,
                               breached=state.breached and reached_due)


def elapsed_at(state: ClockState, at: datetime, cal: Calendar) -> float:
    """Return the business minutes counted by ``at``; never less than ``elapsed_minutes``."""
    _require_aware(at)
    if not state.is_running:
        return state.elapsed_minutes
    assert state.running_since is not None
    return state.elapsed_minutes + business_minutes_between(state.running_since, at, cal)


def due_at(state: ClockState, cal: Calendar) -> datetime | None:
    """Return when the target is reached; None while paused or met, or without a target."""
    if state.target_minutes is None:
        return None
    return _when_reached(state, state.target_minutes, cal)


def warn_at(state: ClockState, cal: Calendar, fraction: float = WARN_FRACTION) -> datetime | None:
    """Return when ``fraction`` of the target is reached; None as for :func:`due_at`."""
    if state.target_minutes is None:
        return None
    return _when_reached(state, fraction * state.target_minutes, cal)


def clock_state_name(state: ClockState, at: datetime, cal: Calendar,
                     fraction: float = WARN_FRACTION) -> ClockStateName:
    """Name the clock at ``at``: met, breached (even if paused since), paused, warning, on_track.

    The target counts as breached from the due instant itself.
    """
    if state.met_at is not None:
        return "met"
    elapsed = elapsed_at(state, at, cal)
    target = state.target_minutes
    if target is not None and _reached(elapsed, target):
        return "breached"
    if not state.is_running:
        return "paused"
    if target is not None and _reached(elapsed, fraction * target):
        return "warning"
    return "on_track"


def next_event_at(state: ClockState, cal: Calendar,
                  fraction: float = WARN_FRACTION) -> datetime | None:
    """Return when the next unfired alert (warning, then breach) is due; None if none can."""
    if not state.warned:
        return warn_at(state, cal, fraction)
    if not state.breached:
        return due_at(state, cal)
    return None


def fire_events(state: ClockState, at: datetime, cal: Calendar,
                fraction: float = WARN_FRACTION) -> tuple[ClockState, tuple[ClockEvent, ...]]:
    """Return the clock with alerts due by ``at`` marked fired, and the alerts to send.

    A breach also marks the warning fired without sending it: one late message, not two.
    Met clocks and clocks without a target fire nothing.
    """
    target = state.target_minutes
    if state.met_at is not None or target is None:
        return state, ()
    elapsed = elapsed_at(state, at, cal)
    if not state.breached and _reached(elapsed, target):
        return dataclasses.replace(state, warned=True, breached=True), ("breached",)
    if not state.warned and _reached(elapsed, fraction * target):
        return dataclasses.replace(state, warned=True), ("warning",)
    return state, ()


def _when_reached(state: ClockState, minutes: float, cal: Calendar) -> datetime | None:
    if not state.is_running:
        return None
    assert state.running_since is not None
    remaining = max(0.0, minutes - state.elapsed_minutes)
    return add_business_minutes(state.running_since, remaining, cal)


def _reached(elapsed: float, threshold: float) -> bool:
    return elapsed + _SLACK_MINUTES >= threshold


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass an aware instant")
