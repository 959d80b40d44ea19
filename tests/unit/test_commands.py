"""Tests for mailgate.commands: the agent command block at the top of a mail body."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.refs import MAX_TICKET_NUMBER
from mailgate.commands import (
    MAX_DUE_MINUTES,
    MAX_TIME_MINUTES,
    Command,
    CommandError,
    describe_commands,
    format_command,
    parse_commands,
    parse_due,
    parse_duration_minutes,
)

NOW = datetime(2024, 3, 8, 10, 0, tzinfo=UTC)  # a Friday
CET = timezone(timedelta(hours=1))


def only(body: str, **kwargs: str) -> Command:
    parsed = parse_commands(body, **kwargs)
    assert parsed.errors == ()
    assert len(parsed.commands) == 1
    return parsed.commands[0]


def error_of(body: str, **kwargs: str) -> CommandError:
    parsed = parse_commands(body, **kwargs)
    assert parsed.commands == ()
    assert len(parsed.errors) == 1
    return parsed.errors[0]


# --- the block and the reply text -------------------------------------------------------------


def test_commands_at_top_are_split_from_the_reply_text() -> None:
    parsed = parse_commands("#status Pending\n#assign me\n\nThanks, looking into it.\n")
    assert parsed.commands == (Command("status", ("Pending",)), Command("assign", ("me",)))
    assert parsed.reply_text == "Thanks, looking into it.\n"
    assert parsed.has_commands
    assert not parsed.is_note


def test_blank_lines_between_and_before_commands_are_allowed() -> None:
    parsed = parse_commands("\n  \n#close\n\n\t\n#tag vip\nbody")
    assert [c.name for c in parsed.commands] == ["close", "tag"]
    assert parsed.reply_text == "body"


def test_first_ordinary_line_ends_the_block_and_later_commands_stay_text() -> None:
    parsed = parse_commands("#close\nHello\n#reopen\n")
    assert parsed.commands == (Command("close", ()),)
    assert parsed.reply_text == "Hello\n#reopen\n"


def test_body_without_commands_keeps_text_minus_leading_blank_lines() -> None:
    parsed = parse_commands("\n\n  Hi there,\n\nthanks\n")
    assert not parsed.has_commands
    assert parsed.reply_text == "  Hi there,\n\nthanks\n"


def test_body_of_only_commands_has_empty_reply_text() -> None:
    assert parse_commands("#close\n\n").reply_text == ""
    assert parse_commands("").reply_text == ""


@pytest.mark.parametrize(
    "line",
    ["# Heading", "#1 thing", "#", "##status open", "#-close", "#\tclose", "#Über", "  # note"],
)
def test_prefix_not_followed_by_a_letter_is_ordinary_text(line: str) -> None:
    parsed = parse_commands(f"{line}\n#close\n")
    assert not parsed.has_commands
    assert parsed.reply_text == f"{line}\n#close\n"


def test_markdown_heading_after_commands_starts_the_reply() -> None:
    parsed = parse_commands("#close\n# Summary\n- fixed\n")
    assert parsed.commands == (Command("close", ()),)
    assert parsed.reply_text == "# Summary\n- fixed\n"


def test_quoted_command_is_text() -> None:
    assert not parse_commands("> #close\n").has_commands


def test_leading_bom_and_crlf_are_handled() -> None:
    parsed = parse_commands("\ufeff#status Open\r\n\r\n#close\r\nDone.\r\nBye\r")
    assert [c.name for c in parsed.commands] == ["status", "close"]
    assert parsed.commands[0].args == ("Open",)
    assert parsed.reply_text == "Done.\nBye\n"


def test_indented_command_lines_are_commands() -> None:
    assert only("   #close  \n").name == "close"


def test_names_are_case_insensitive_and_may_take_a_colon() -> None:
    assert only("#STATUS: In Progress") == Command("status", ("In Progress",))
    assert only("#Close:") == Command("close", ())
    assert only("#priority:high") == Command("priority", ("high",))


def test_aliases_map_to_canonical_names() -> None:
    assert only("#comment").name == "note"
    assert only("#owner me") == Command("assign", ("me",))
    assert only("#tags a") == Command("tag", ("+a",))


def test_command_keeps_its_original_line_but_compares_without_it() -> None:
    cmd = only("  #Status   Open  ")
    assert cmd.line == "#Status   Open"
    assert cmd == Command("status", ("Open",), line="something else")


def test_configurable_prefix() -> None:
    parsed = parse_commands("!close\n#status open\n", prefix="!")
    assert parsed.commands == (Command("close", ()),)
    assert parsed.reply_text == "#status open\n"


@pytest.mark.parametrize("prefix", ["", " ", "a b"])
def test_prefix_must_be_non_empty_without_whitespace(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        parse_commands("#close", prefix=prefix)


# --- each command -----------------------------------------------------------------------------


def test_status_keeps_spaces_collapsed() -> None:
    assert only("#status   In \t Progress ") == Command("status", ("In Progress",))


def test_assign_me_email_and_name() -> None:
    assert only("#assign Me").args == ("me",)
    assert only("#assign Alice@Example.COM").args == ("alice@example.com",)
    assert only("#assign Alice Smith <Alice@Example.com>").args == ("alice@example.com",)
    assert only("#assign mailto:bob@example.com").args == ("bob@example.com",)
    assert only("#assign  Alice   Smith").args == ("Alice Smith",)


def test_unassign_close_reopen_help_note_take_no_arguments() -> None:
    for name in ("unassign", "close", "reopen", "help", "note"):
        assert only(f"#{name}") == Command(name, ())


def test_note_marks_the_whole_mail_as_internal() -> None:
    parsed = parse_commands("#note\nCustomer called, see log.")
    assert parsed.is_note
    assert parsed.reply_text == "Customer called, see log."


def test_priority_and_category() -> None:
    assert only("#priority urgent").args == ("urgent",)
    assert only("#category  feature   request").args == ("feature request",)


def test_tag_signs_default_to_add_and_commas_separate() -> None:
    args = only("#tag +vip -spam billing, c++,a.b").args
    assert args == ("+vip", "-spam", "+billing", "+c++", "+a.b")


@pytest.mark.parametrize(
    ("text", "arg"),
    [
        ("+2d", "+2d"),
        ("+4H", "+4h"),
        ("+030m", "+30m"),
        ("2024-05-01", "2024-05-01"),
        ("2024-05-01T09:30", "2024-05-01T09:30"),
        ("2024-05-01 09:30", "2024-05-01T09:30"),
        ("2024-05-01t09:30", "2024-05-01T09:30"),
    ],
)
def test_due_is_normalised(text: str, arg: str) -> None:
    assert only(f"#due {text}").args == (arg,)


def test_watch_and_unwatch_lowercase_emails() -> None:
    assert only("#watch Boss@Example.com").args == ("boss@example.com",)
    assert only("#unwatch a@x.org, <b@y.org>").args == ("a@x.org", "b@y.org")


@pytest.mark.parametrize(
    "text", ["TKT-42", "tkt-000042", "[TKT-000042]", "Tkt-0042", "42", "00042", "[ TKT-42 ]"]
)
def test_merge_accepts_the_token_in_any_case_and_padding(text: str) -> None:
    assert only(f"#merge {text}") == Command("merge", ("42",))


def test_merge_uses_the_configured_ticket_prefix() -> None:
    assert only("#merge HD#7", ticket_prefix="HD#").args == ("7",)
    assert "not a ticket number" in error_of("#merge TKT-7", ticket_prefix="HD#").reason


def test_canned_takes_one_shortcut() -> None:
    assert only("#canned reset-password").args == ("reset-password",)


@pytest.mark.parametrize(
    ("line", "args"),
    [
        ("#time 45m", ("45",)),
        ("#time 1h", ("60",)),
        ("#time 1h30m phone call", ("90", "phone call")),
        ("#time 1.5h  on  site", ("90", "on site")),
        ("#time 90", ("90",)),
        ("#time 1h 30m fixed the printer", ("90", "fixed the printer")),
        ("#time 2 hours", ("120",)),
        ("#time 1:15 call", ("75", "call")),
        ("#time 30 calls made", ("30", "calls made")),
    ],
)
def test_time_reads_duration_and_optional_text(line: str, args: tuple[str, ...]) -> None:
    assert only(line) == Command("time", args)


def test_help_text_lists_every_command_with_the_prefix() -> None:
    text = describe_commands("!")
    for name in ("status", "assign", "tag", "due", "merge", "time", "help"):
        assert f"!{name}" in text


# --- errors -----------------------------------------------------------------------------------


def test_unknown_command_is_an_error_and_stays_in_the_block() -> None:
    parsed = parse_commands("#frobnicate now\n#close\nText")
    assert parsed.commands == (Command("close", ()),)
    assert parsed.errors == (
        CommandError("#frobnicate now", 'unknown command "#frobnicate"; #help lists them'),
    )
    assert parsed.reply_text == "Text"
    assert parsed.has_commands


def test_name_glued_to_other_characters_is_unknown() -> None:
    assert error_of("#close!").reason.startswith('unknown command "#close!"')


def test_unknown_name_is_shortened_in_the_reason() -> None:
    reason = error_of("#" + "x" * 500).reason
    assert len(reason) < 120


@pytest.mark.parametrize("name", ["unassign", "close", "reopen", "help", "note"])
def test_extra_arguments_are_an_error(name: str) -> None:
    assert error_of(f"#{name} now").reason == f"#{name}: takes no arguments. Usage: #{name}"


@pytest.mark.parametrize(
    "name",
    ["status", "assign", "priority", "category", "tag", "due", "watch", "unwatch", "merge",
     "canned", "time"],
)  # fmt: skip
def test_missing_argument_is_an_error(name: str) -> None:
    reason = error_of(f"#{name}").reason
    assert reason.startswith(f"#{name}: needs")
    assert "Usage: #" in reason


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("#assign alice@", "not an email address"),
        ("#assign a@b@c", "not an email address"),
        ("#watch not-an-address", "not an email address"),
        ("#unwatch a@x.org b", "not an email address"),
        ("#tag +", "not a tag"),
        ("#tag +-a", "not a tag"),
        ("#tag ok !bad", "not a tag"),
        ("#due tomorrow", "not a date"),
        ("#due 2024-02-30", "not a date"),
        ("#due 2024-05-01T25:00", "not a date"),
        ("#due +2w", "not a date"),
        ("#due +0d", "more than zero"),
        (f"#due +{MAX_DUE_MINUTES + 1}m", "more than zero"),
        ("#merge TKT-0", "not a ticket number"),
        ("#merge TKT-abc", "not a ticket number"),
        ("#merge OTHER-42", "not a ticket number"),
        (f"#merge TKT-{MAX_TICKET_NUMBER + 1}", "not a ticket number"),
        ("#merge TKT-1 TKT-2", "not a ticket number"),
        ("#canned two words", "takes one shortcut"),
        ("#time soon", "not a duration"),
        ("#time 0m", "more than zero"),
        (f"#time {MAX_TIME_MINUTES + 1}", "more than zero"),
        ("#time 1.5 hours?", "not a duration"),
        ("#status open\x00", "control characters"),
    ],
)
def test_bad_arguments_are_errors_with_a_reason(line: str, needle: str) -> None:
    error = error_of(line)
    assert error.line == line
    assert needle in error.reason


def test_errors_keep_order_and_do_not_stop_later_commands() -> None:
    parsed = parse_commands("#due soon\n#close\n#bogus\n#reopen\n")
    assert [c.name for c in parsed.commands] == ["close", "reopen"]
    assert [e.line for e in parsed.errors] == ["#due soon", "#bogus"]


# --- durations and due dates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("45m", 45), ("45 min", 45), ("45mins", 45), ("10 minutes", 10), ("1h", 60),
        ("1H30M", 90), ("1h30", 90), ("1.5h", 90), ("1,5h", 90), ("0.1h", 6), ("1.33h", 80),
        ("90", 90), (" 90 ", 90), ("2 hours", 120), ("3hrs", 180), ("1:30", 90), ("0", 0),
        ("0.5m", 1),
    ],
)  # fmt: skip
def test_parse_duration_minutes_accepts(text: str, minutes: int) -> None:
    assert parse_duration_minutes(text) == minutes


@pytest.mark.parametrize(
    "text", ["", "h", "m", "1.5", "abc", "1h 2h", "30m 1h", "-5m", "1:75", "1d", "١٢"]
)
def test_parse_duration_minutes_refuses(text: str) -> None:
    assert parse_duration_minutes(text) is None


def test_parse_due_relative_hours_and_minutes_are_elapsed_time() -> None:
    assert parse_due("+4h", NOW, CET) == NOW + timedelta(hours=4)
    assert parse_due("+30m", NOW, CET) == NOW + timedelta(minutes=30)


def test_parse_due_relative_days_keep_the_local_wall_clock_across_dst() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database for Europe/Berlin")
    before = datetime(2024, 3, 30, 9, 0, tzinfo=UTC)  # 10:00 CET, the day before DST
    due = parse_due("+1d", before, berlin)
    assert due == datetime(2024, 3, 31, 8, 0, tzinfo=UTC)  # 10:00 CEST
    assert due is not None and due.astimezone(berlin).hour == 10


def test_parse_due_date_alone_means_five_pm_local() -> None:
    due = parse_due("2024-05-01", NOW, CET)
    assert due == datetime(2024, 5, 1, 16, 0, tzinfo=UTC)
    assert due is not None and due.tzinfo is UTC


def test_parse_due_date_and_time_are_local() -> None:
    assert parse_due("2024-05-01T09:30", NOW, CET) == datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


def test_parse_due_returns_none_for_garbage_and_overflow() -> None:
    assert parse_due("friday", NOW, CET) is None
    assert parse_due("9999-12-31T23:59", NOW, timezone(timedelta(hours=-1))) is None
    assert parse_due("+9999999d", NOW, CET) is None


def test_parse_due_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_due("+1h", NOW.replace(tzinfo=None), CET)


def test_every_accepted_due_argument_resolves() -> None:
    for text in ("+1d", "+4h", "+30m", "2024-05-01", "2024-05-01T09:30"):
        (arg,) = only(f"#due {text}").args
        assert parse_due(arg, NOW, CET) is not None


# --- format_command ---------------------------------------------------------------------------


def test_format_command_writes_the_line_an_agent_would_type() -> None:
    assert format_command(Command("status", ("In Progress",))) == "#status In Progress"
    assert format_command(Command("merge", ("42",))) == "#merge TKT-000042"
    assert format_command(Command("time", ("90", "call"))) == "#time 90m call"
    assert format_command(Command("close", ()), prefix="!") == "!close"


@pytest.mark.parametrize(
    "cmd",
    [
        Command("frobnicate", ()),
        Command("close", ("now",)),
        Command("status", ()),
        Command("status", ("two\nlines",)),
        Command("status", ("  padded ",)),
        Command("merge", ("0",)),
        Command("tag", ("bare",)),
        Command("assign", ("Alice@Example.com",)),
        Command("time", ("0",)),
    ],
)
def test_format_command_refuses_what_parsing_could_not_produce(cmd: Command) -> None:
    with pytest.raises(ValueError):
        format_command(cmd)


# --- properties -------------------------------------------------------------------------------

_WORD = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=8
)
_PHRASE = st.lists(_WORD, min_size=1, max_size=4).map(" ".join)
_ATEXT = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-"
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_EMAIL = st.builds(
    "{}@{}".format,
    st.lists(st.text(_ATEXT, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
    st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
)
_TAG = st.tuples(st.sampled_from("+-"), st.from_regex(r"\w[\w.:/+#&-]{0,8}", fullmatch=True)).map(
    "".join
)
_DUE = st.one_of(
    st.sampled_from([("d", 1440), ("h", 60), ("m", 1)]).flatmap(
        lambda u: st.integers(1, MAX_DUE_MINUTES // u[1]).map(lambda n: f"+{n}{u[0]}")
    ),
    st.dates().map(date.isoformat),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M") if d.year >= 1000 else "2024-01-01"),
)
_NAME = _PHRASE.filter(lambda s: "@" not in s and s.lower() != "me")


def _cmd(name: str, args: st.SearchStrategy[tuple[str, ...]]) -> st.SearchStrategy[Command]:
    return args.map(lambda a: Command(name, a))


VALID_COMMANDS = st.one_of(
    *[_cmd(n, st.tuples(_PHRASE)) for n in ("status", "priority", "category")],
    _cmd("assign", st.tuples(st.one_of(st.just("me"), _EMAIL, _NAME))),
    *[_cmd(n, st.just(())) for n in ("unassign", "note", "close", "reopen", "help")],
    _cmd("tag", st.lists(_TAG, min_size=1, max_size=4).map(tuple)),
    _cmd("due", st.tuples(_DUE)),
    *[_cmd(n, st.lists(_EMAIL, min_size=1, max_size=3).map(tuple)) for n in ("watch", "unwatch")],
    _cmd("merge", st.integers(1, MAX_TICKET_NUMBER).map(lambda n: (str(n),))),
    _cmd("canned", st.tuples(_WORD)),
    _cmd(
        "time",
        st.tuples(st.integers(1, MAX_TIME_MINUTES).map(str))
        | st.tuples(st.integers(1, MAX_TIME_MINUTES).map(str), _PHRASE),
    ),
)
PREFIXES = st.sampled_from(["#", "!", "/", "@@", "cmd:"])
TICKET_PREFIXES = st.sampled_from(["TKT-", "HD#", "req.", ""])


def _is_command_shaped(line: str, prefix: str = "#") -> bool:
    rest = line.strip()
    after = rest[len(prefix) : len(prefix) + 1]
    return rest.startswith(prefix) and after.isascii() and after.isalpha()


_ORDINARY_LINE = st.text(st.characters(exclude_characters="\r\n"), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "" and not s.startswith("\ufeff") and not _is_command_shaped(s)
)
_LINE_PIECES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["#", "# x", "#status", "#merge TKT-", "#time 1h", "#due +", "\ufeff", ""]),
    VALID_COMMANDS.map(format_command),
)


@given(st.text())
def test_parse_commands_never_raises_on_any_text(body: str) -> None:
    parsed = parse_commands(body)
    first_line = parsed.reply_text.split("\n")[0]
    assert first_line.strip() or parsed.reply_text == ""  # no leading blank lines


@given(st.lists(_LINE_PIECES, max_size=12), st.sampled_from(["\n", "\r\n", "\r"]))
def test_parse_commands_never_raises_on_random_lines(lines: list[str], eol: str) -> None:
    parsed = parse_commands(eol.join(lines))
    for cmd in parsed.commands:  # whatever was parsed formats and parses back to itself
        assert parse_commands(format_command(cmd)).commands == (cmd,)


@given(VALID_COMMANDS, PREFIXES, TICKET_PREFIXES)
def test_formatted_command_parses_back_to_itself(
    cmd: Command, prefix: str, ticket_prefix: str
) -> None:
    line = format_command(cmd, prefix=prefix, ticket_prefix=ticket_prefix)
    parsed = parse_commands(line, prefix=prefix, ticket_prefix=ticket_prefix)
    assert parsed.errors == ()
    assert parsed.commands == (cmd,)
    assert parsed.reply_text == ""


@given(
    st.lists(VALID_COMMANDS, max_size=4),
    _ORDINARY_LINE,
    st.lists(VALID_COMMANDS, min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)
def test_commands_after_the_first_ordinary_line_are_not_parsed(
    before: list[Command], ordinary: str, after: list[Command], eol: str
) -> None:
    lines = [format_command(c) for c in before] + [ordinary] + [format_command(c) for c in after]
    parsed = parse_commands(eol.join(lines))
    assert parsed.commands == tuple(before)
    assert parsed.errors == ()
    assert parsed.reply_text.split("\n")[0] == ordinary
    assert parsed.reply_text.endswith(format_command(after[-1]))
