"""The ticket model's pure rules: link words, status lists, permissions, task answers,
and the config that holds types, colours and roles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.assignment import TicketView, matches
from helpdesk.config import (
    AutomationAction,
    Conditions,
    PermissionSettings,
    StatusSettings,
    TicketSettings,
    TypeSettings,
    check_color,
)
from helpdesk.errors import ConfigError
from helpdesk.permissions import Forbidden, command_needs, missing, require
from helpdesk.relations import LinkTarget, inverse, parse_link
from helpdesk.statuses import StatusError, check, find
from helpdesk.tasks import task_url
from mailgate.commands import Command, format_command, parse_commands


@pytest.mark.parametrize(("words", "target"), [
    ("TKT-000012", LinkTarget("related", 12)),
    ("parent tkt-10", LinkTarget("parent", 10)),
    ("CHILD [TKT-000013]", LinkTarget("child", 13)),
    ("task https://t.example/T-1 Replace the fuser",
     LinkTarget("task", url="https://t.example/T-1", title="Replace the fuser")),
    ("incident http://status.example/42", LinkTarget("incident", url="http://status.example/42")),
])
def test_link_words(words: str, target: LinkTarget) -> None:
    assert parse_link(words.split(), "TKT-") == target


@pytest.mark.parametrize(("words", "why"), [
    ("", "needs a ticket"), ("issue ftp://x", "needs an http"), ("parent", "one ticket"),
    ("TKT-1 TKT-2", "one ticket"), ("sibling TKT-1", "one ticket"), ("nope", "not a ticket"),
])
def test_bad_link_words_say_why(words: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_link(words.split(), "TKT-")


@given(st.sampled_from(["related", "parent", "child", "followup"]))
def test_a_link_read_from_the_other_end_and_back_is_itself(kind: str) -> None:
    assert inverse(inverse(kind)) == kind


@given(st.integers(1, 999_999), st.sampled_from(["related", "parent", "child"]))
def test_link_commands_format_and_parse_back(number: int, kind: str) -> None:
    cmd = Command("link", (kind, str(number)))
    assert parse_commands(format_command(cmd)).commands == (cmd,)


def test_type_and_task_commands_parse() -> None:
    parsed = parse_commands("#type feature request\n#task\n#task Fix it\n")
    assert [(c.name, c.args) for c in parsed.commands] == [
        ("type", ("feature request",)), ("task", ()), ("task", ("Fix it",))]


DEFAULTS = TicketSettings().statuses


def test_the_default_statuses_are_a_valid_list() -> None:
    check(DEFAULTS)
    assert find(DEFAULTS, "in_progress") is DEFAULTS[2]
    assert find(DEFAULTS, "ON-HOLD") is DEFAULTS[3]
    assert find(DEFAULTS, "Waiting") is None


@pytest.mark.parametrize(("statuses", "why"), [
    ((StatusSettings("Waiting", "paused"), *DEFAULTS), "first status must be of class active"),
    (tuple(s for s in DEFAULTS if s.status_class != "closed"), "class closed"),
    (tuple(s for s in DEFAULTS if s.status_class != "resolved"), "class resolved"),
    ((*DEFAULTS, StatusSettings("open", "active")), "same name"),
])
def test_status_lists_the_desk_cannot_run_on_are_refused(
        statuses: tuple[StatusSettings, ...], why: str) -> None:
    with pytest.raises(StatusError, match=why):
        check(statuses)


@pytest.mark.parametrize("color", ["", "#fff", "#FF8800", "#11223344", "teal"])
def test_colours_that_may_reach_a_page(color: str) -> None:
    assert check_color(color) == color


@pytest.mark.parametrize("color", ["red;x:y", "url(x)", "#ggg", "expression(alert(1))", "#"])
def test_colours_that_could_inject_css_are_refused(color: str) -> None:
    with pytest.raises(ConfigError, match="is not a colour"):
        check_color(color)


def test_type_settings() -> None:
    t = TicketSettings()
    assert [x.name for x in t.types] == ["Bug", "Question", "Feature Request",
                                          "Change Request", "Support", "Billing", "Other"]
    assert t.canonical_type("feature_request") == "Feature Request"
    with pytest.raises(ConfigError, match="default_type"):
        TicketSettings(default_type="Incident")
    with pytest.raises(ConfigError, match="named twice"):
        TicketSettings(types=(TypeSettings("Bug"), TypeSettings("bug")), default_type="Bug")
    with pytest.raises(ConfigError, match="cannot be inherited"):
        TicketSettings(followup_inherits=("status",))
    with pytest.raises(ConfigError, match="status, priority, category or type"):
        AutomationAction(set={"subject": "x"})


def test_roles_and_permissions() -> None:
    p = PermissionSettings()
    assert missing(p, "light", command_needs("note")) == []
    assert missing(p, "light", command_needs("watch")) == []
    assert missing(p, "light", command_needs("status")) == ["ticket.update"]
    assert missing(p, "light", command_needs("merge")) == ["ticket.update", "ticket.delete"]
    assert missing(p, "agent", command_needs("merge")) == []
    assert missing(p, "nobody", command_needs("help")) == ["ticket.view"]
    assert command_needs("some future command") == ("ticket.update",)
    with pytest.raises(Forbidden, match=r"your role \(light\) may not close"):
        require(p, "light", command_needs("close"), doing="close")
    with pytest.raises(ConfigError, match="unknown"):
        PermissionSettings(light=("ticket.fly",))


def test_the_type_condition_of_rules() -> None:
    assert matches(Conditions(type="bug"), TicketView(type="Bug"))
    assert not matches(Conditions(type="bug"), TicketView(type="Billing"))
    assert matches(Conditions(type="/^(bug|billing)$/"), TicketView(type="Billing"))


@pytest.mark.parametrize(("body", "headers", "url"), [
    ({"url": "https://t.example/1"}, {}, "https://t.example/1"),
    ({"html_url": "https://github.example/o/r/issues/7", "url": "api-path"}, {},
     "https://github.example/o/r/issues/7"),
    (None, {"location": "https://t.example/2"}, "https://t.example/2"),
    ({"url": "javascript:alert(1)"}, {}, None),
    ([], {}, None),
])
def test_the_task_url_in_an_answer(body: object, headers: dict[str, str],
                                   url: str | None) -> None:
    assert task_url(body, headers) == url
