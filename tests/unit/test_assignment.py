"""The pure half of auto-assignment: conditions, first match, turn and load."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.assignment import (
    Candidate,
    TicketView,
    first_match,
    holds,
    least_busy,
    matches,
    next_in_turn,
)
from helpdesk.config import AssignmentRule, Conditions, load_settings
from helpdesk.errors import ConfigError

members = st.lists(st.builds(Candidate, id=st.integers(1, 50), email=st.just("a@x"),
                             available=st.booleans(), open_tickets=st.integers(0, 9)),
                   max_size=8, unique_by=lambda c: c.id)


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("", "anything", True), ("invoice", "Your INVOICE 42", True),
    ("/inv(oice)?\\s+\\d+/", "Invoice 42", True), ("/^re:/", "Fwd: re: x", False),
    ("refund", "no match here", False), ("/", "a/b", True),
])
def test_a_condition_is_a_substring_or_a_slashed_regex(pattern: str, value: str,
                                                       expected: bool) -> None:
    assert holds(pattern, value) is expected


def test_every_given_condition_must_hold_and_tags_must_all_be_there() -> None:
    view = TicketView(category="billing", subject="Invoice 42", sender_domain="example.net",
                      tags=frozenset({"vip", "de"}))
    assert matches(Conditions(category="billing", subject="/\\d+/"), view)
    assert not matches(Conditions(category="billing", sender_domain="example.org"), view)
    assert matches(Conditions(tags=("VIP",)), view)
    assert not matches(Conditions(tags=("vip", "fr")), view)


def test_the_first_enabled_matching_rule_wins() -> None:
    off = AssignmentRule("off", enabled=False, assign="a@x")
    billing = AssignmentRule("billing", when=Conditions(category="billing"), assign="b@x")
    rest = AssignmentRule("rest", assign="c@x")
    assert first_match([off, billing, rest], TicketView(category="billing")) is billing
    assert first_match([off, billing, rest], TicketView(category="general")) is rest
    assert first_match([off], TicketView()) is None


def test_a_bad_regular_expression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad regular expression"):
        Conditions(subject="/(unclosed/")


@given(members, st.integers(0, 60))
def test_the_turn_goes_to_the_next_available_member_in_order(team: list[Candidate],
                                                             after: int) -> None:
    chosen = next_in_turn(team, after)
    available = [m for m in team if m.available]
    assert (chosen is None) == (not available)
    if chosen is not None and after in [m.id for m in team]:
        ids = [m.id for m in team]
        start = ids.index(after)
        between = [team[(start + k) % len(team)] for k in range(1, len(team))]
        skipped = between[:between.index(chosen)] if chosen in between else between
        assert not any(m.available for m in skipped), "an available member was passed over"


@given(members.filter(lambda t: any(m.available for m in t)), st.integers(1, 5))
def test_round_robin_gives_every_available_member_an_equal_share(team: list[Candidate],
                                                                  rounds: int) -> None:
    available = [m for m in team if m.available]
    last, counts = None, Counter[int]()
    for _ in range(rounds * len(available)):
        chosen = next_in_turn(team, last)
        assert chosen is not None and chosen.available
        counts[chosen.id] += 1
        last = chosen.id
    assert set(counts.values()) == {rounds}


@given(members)
def test_least_busy_takes_the_fewest_open_tickets_among_the_available(
        team: list[Candidate]) -> None:
    chosen = least_busy(team)
    available = [m for m in team if m.available]
    if not available:
        assert chosen is None
        return
    assert chosen is not None and chosen.available
    assert chosen.open_tickets == min(m.open_tickets for m in available)


def test_least_busy_ties_go_to_whoever_was_assigned_least_recently() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    team = [Candidate(1, "a@x", last_assigned_at=now),
            Candidate(2, "b@x", last_assigned_at=now - timedelta(hours=1)),
            Candidate(3, "c@x", open_tickets=0, last_assigned_at=None, available=False)]
    chosen = least_busy(team)
    assert chosen is not None and chosen.id == 2
    assert least_busy([*team, Candidate(4, "d@x")]).id == 4  # type: ignore[union-attr]


def test_the_readme_rule_sets_load(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Teams and auto-assignment")[1].split("```toml")[1].split("```")[0]
    (tmp_path / "rules.toml").write_text(block)
    settings = load_settings(tmp_path / "rules.toml", environ={})
    assert [t.name for t in settings.teams] == ["support", "accounts"]
    assert [r.method for r in settings.assignment] == ["round_robin", "category",
                                                       "round_robin"]
    assert settings.assignment[2].assign == "bob@example.org"


def test_the_readme_automation_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("### Automations")[1].split("```toml")[1].split("```")[0]
    (tmp_path / "auto.toml").write_text('[[teams]]\nname = "support"\n' + block)
    [automation] = load_settings(tmp_path / "auto.toml", environ={}).automations
    assert (automation.on, len(automation.actions)) == ("sla_breached", 5)
