"""Parse the agent command block at the top of an inbound email body.

Agents drive tickets by mail, Request Tracker style: lines such as ``#status In Progress`` or
``#assign me`` at the very top of a reply. The contract:

- A *command line* is a line whose stripped text starts with the prefix (default ``#``)
  immediately followed by an ASCII letter. ``# Heading``, ``#1 thing`` or a lone ``#`` are
  ordinary text, so an agent's markdown is never eaten.
- Command lines come first, one per line; blank lines between them are allowed. The first
  non-blank line that is not a command line ends the block; from there on everything is the
  reply text, even lines that look like commands.
- Command names are case-insensitive; an optional colon may follow the name
  (``#Status: Open``). Unknown names and missing or malformed arguments become
  :class:`CommandError` values with a reason that is safe to mail back to the agent.
- A leading BOM is dropped and CRLF / CR line endings become LF, in the reply text too.

Parsing is pure and total: :func:`parse_commands` never raises on any ``str`` body. Whether
the sender may run commands at all (agents only) and whether a status or priority name
exists are the ticket service's questions, not this module's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from string import ascii_letters

from helpdesk.refs import parse_ticket_ref
from helpdesk.relations import parse_link
from helpdesk.ticketquery import PRESETS
from mailgate._when import (
    DUE_DEFAULT_TIME,
    RelativeDue,
    parse_due,
    parse_due_text,
    parse_duration_minutes,
)

__all__ = [
    "DUE_DEFAULT_TIME",
    "Command",
    "CommandError",
    "ParsedBody",
    "describe_commands",
    "format_command",
    "parse_commands",
    "parse_due",
    "parse_duration_minutes",
]

MAX_TIME_MINUTES = 31 * 24 * 60  # one #time entry; a larger figure is surely a typo
MAX_DUE_MINUTES = 10 * 366 * 24 * 60  # relative #due at most ten years ahead
_SHOWN_CHARS = 60  # how much of an unknown name an error quotes back


@dataclass(frozen=True)
class Command:
    """One recognised command with normalised arguments.

    ``line`` is provenance for error reports and audit; it takes no part in equality, so a
    command formatted and parsed again compares equal to the original.
    """

    name: str
    args: tuple[str, ...]
    line: str = field(default="", compare=False)


@dataclass(frozen=True)
class CommandError:
    """A command line that could not be used, with a reason safe to mail back."""

    line: str
    reason: str


@dataclass(frozen=True)
class ParsedBody:
    """The command block of a body, split from the reply text that follows it."""

    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    reply_text: str

    @property
    def is_note(self) -> bool:
        """True when ``#note`` asks for the whole mail to become an internal note."""
        return any(cmd.name == "note" for cmd in self.commands)

    @property
    def has_commands(self) -> bool:
        """True when the body opened with a command block, valid or not."""
        return bool(self.commands or self.errors)


class _ArgumentError(ValueError):
    """Raised by an argument parser; the message is the user-facing problem."""


_ArgParser = Callable[[str, str], tuple[str, ...]]


@dataclass(frozen=True)
class _Spec:
    usage: str
    summary: str
    parse: _ArgParser


# --- argument parsers: (rest of the line, ticket prefix) -> normalised args -------------------

_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_ANGLE_RE = re.compile(r"<([^<>]*)>")
_TAG_RE = re.compile(r"([+-]?)(\w[\w.:/+#&-]*)")
_SEPARATORS_RE = re.compile(r"[\s,]+")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _one_word(rest: str, what: str) -> str:
    words = rest.split()
    if not words:
        raise _ArgumentError(f"needs {what}")
    if len(words) > 1:
        raise _ArgumentError(f"takes one {what}, got {len(words)} words")
    return words[0]


def _email(text: str) -> str:
    inner = _ANGLE_RE.search(text)
    candidate = (inner.group(1) if inner else text).strip()
    if candidate.lower().startswith("mailto:"):
        candidate = candidate[len("mailto:") :]
    if not _EMAIL_RE.fullmatch(candidate):
        raise _ArgumentError(f'"{_shorten(text)}" is not an email address')
    return candidate.lower()


def _no_args(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    if rest.strip():
        raise _ArgumentError("takes no arguments")
    return ()


def _text(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    value = _collapse(rest)
    if not value:
        raise _ArgumentError("needs a value")
    return (value,)


def _assign(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    value = _collapse(rest)
    if not value:
        raise _ArgumentError("needs an agent: an email address, a name, or me")
    if value.lower() in ("me", "auto"):
        return (value.lower(),)
    if "@" in value:
        return (_email(value),)
    return (value,)


def _emails(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    parts = [part for part in _SEPARATORS_RE.split(rest) if part]
    if not parts:
        raise _ArgumentError("needs an email address")
    return tuple(_email(part) for part in parts)


def _tags(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    parts = [part for part in _SEPARATORS_RE.split(rest) if part]
    if not parts:
        raise _ArgumentError("needs at least one tag, e.g. +vip -spam")
    out: list[str] = []
    for part in parts:
        match = _TAG_RE.fullmatch(part)
        if match is None:
            raise _ArgumentError(f'"{_shorten(part)}" is not a tag (letters, digits, .:/+#&-)')
        out.append((match.group(1) or "+") + match.group(2))
    return tuple(out)


def _due(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    value = _collapse(rest)
    if not value:
        raise _ArgumentError("needs a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM) or +2d, +4h, +30m")
    due = parse_due_text(value)
    if due is None:
        raise _ArgumentError(
            f'"{_shorten(value)}" is not a date (YYYY-MM-DD, YYYY-MM-DDTHH:MM) '
            "or an offset (+2d, +4h, +30m)"
        )
    if isinstance(due, RelativeDue):
        if not 0 < due.minutes <= MAX_DUE_MINUTES:
            raise _ArgumentError("the offset must be more than zero and at most ten years")
        return (f"+{due.amount}{due.unit}",)
    if due.at is None:
        return (due.day.isoformat(),)
    return (f"{due.day.isoformat()}T{due.at.strftime('%H:%M')}",)


def _away(rest: str, ticket_prefix: str) -> tuple[str, ...]:
    value = _collapse(rest)
    if value.lower().startswith("until "):
        value = value[6:].strip()
    if value.lower() in ("off", "back"):
        return ("off",)
    if not value:
        raise _ArgumentError("needs when you are back: until YYYY-MM-DD, +3d, or off")
    return _due(value, ticket_prefix)


def _merge(rest: str, ticket_prefix: str) -> tuple[str, ...]:
    value = _collapse(rest)
    if not value:
        raise _ArgumentError(f"needs the ticket to merge into, e.g. {ticket_prefix}000042")
    number = parse_ticket_ref(value, ticket_prefix)
    if number is None:
        raise _ArgumentError(f'"{_shorten(value)}" is not a ticket number like {ticket_prefix}42')
    return (str(number),)


def _link(rest: str, ticket_prefix: str) -> tuple[str, ...]:
    """The kind, then the ticket number, or the URL and its title (`parse_link`)."""
    try:
        target = parse_link(rest.split(), ticket_prefix)
    except ValueError as exc:
        raise _ArgumentError(str(exc)) from None
    if target.number is not None:
        return (target.kind, str(target.number))
    return (target.kind, target.url, target.title) if target.title else (target.kind,
                                                                          target.url)


def _view(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    name = _one_word(rest, "view").lower()
    if name not in PRESETS:
        raise _ArgumentError(f'no view "{_shorten(name)}" (the views: {", ".join(PRESETS)})')
    return (name,)


def _optional_text(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    value = _collapse(rest)
    return (value,) if value else ()


def _canned(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    return (_one_word(rest, "shortcut"),)


def _time(rest: str, _ticket_prefix: str) -> tuple[str, ...]:
    words = rest.split()
    if not words:
        raise _ArgumentError("needs a duration such as 45m, 1h30m, 1.5h or 90")
    # "1h 30m" and "2 hours" span several words: take the longest run that is a duration.
    for count in range(min(4, len(words)), 0, -1):
        minutes = parse_duration_minutes(" ".join(words[:count]))
        if minutes is not None:
            break
    else:
        raise _ArgumentError(f'"{_shorten(words[0])}" is not a duration like 45m, 1h30m or 1.5h')
    if not 0 < minutes <= MAX_TIME_MINUTES:
        raise _ArgumentError("the duration must be more than zero and at most 31 days")
    text = " ".join(words[count:])
    return (str(minutes), text) if text else (str(minutes),)


_SPECS: dict[str, _Spec] = {
    "status": _Spec("status <name>", "set the status, e.g. In Progress", _text),
    "assign": _Spec("assign <email | name | me | auto>",
                    "give the ticket to an agent (auto: by the assignment rules)", _assign),
    "unassign": _Spec("unassign", "take the ticket off its agent", _no_args),
    "priority": _Spec("priority <name>", "set the priority", _text),
    "category": _Spec("category <name>", "set the category", _text),
    "type": _Spec("type <name>", "set the ticket type, e.g. Bug or Question", _text),
    "tag": _Spec("tag +a -b c", "add or remove tags (bare = add)", _tags),
    "due": _Spec("due <YYYY-MM-DD[THH:MM] | +2d | +4h | +30m>", "set the due time", _due),
    "note": _Spec("note", "file this whole mail as an internal note", _no_args),
    "watch": _Spec("watch <email>", "add a watcher", _emails),
    "unwatch": _Spec("unwatch <email>", "remove a watcher", _emails),
    "merge": _Spec("merge <ticket>", "merge this ticket into another", _merge),
    "link": _Spec("link [related|parent|child] <ticket>, or task|issue|incident <URL> "
                  "[title]", "link a ticket, or where its work happens", _link),
    "unlink": _Spec("unlink [related|parent|child] <ticket>, or task|issue|incident <URL>",
                    "remove a link", _link),
    "task": _Spec("task [title]", "turn the ticket into a task in the task tracker",
                  _optional_text),
    "canned": _Spec("canned <shortcut>", "reply with a canned response", _canned),
    "time": _Spec("time <duration> [text]", "log time spent, e.g. 1h30m", _time),
    "send": _Spec("send", "send the reply the collision guard held", _no_args),
    "discard": _Spec("discard", "drop the held reply (kept as an internal note)", _no_args),
    "close": _Spec("close", "close the ticket", _no_args),
    "reopen": _Spec("reopen", "reopen the ticket", _no_args),
    "away": _Spec("away until <YYYY-MM-DD | +3d> | away off",
                  "no auto-assigned tickets for you until then", _away),
    "list": _Spec("list my-open|urgent-unassigned|sla-breaching|overdue",
                  "mail me that list of tickets", _view),
    "search": _Spec("search <words>", "mail me the tickets these words find", _text),
    "help": _Spec("help", "mail back this list", _no_args),
}
_ALIASES = {"comment": "note", "owner": "assign", "tags": "tag"}


# --- the command block ------------------------------------------------------------------------

_NAME_RE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)(:?)")


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def _is_command_line(stripped: str, prefix: str) -> bool:
    return (
        stripped.startswith(prefix)
        and len(stripped) > len(prefix)
        and stripped[len(prefix)] in ascii_letters
    )


def _parse_line(stripped: str, prefix: str, ticket_prefix: str) -> Command | CommandError:
    after = stripped[len(prefix) :]
    match = _NAME_RE.match(after)
    assert match is not None  # _is_command_line saw a letter right after the prefix
    tail = after[match.end() :]
    if not match.group(2) and tail and not tail[0].isspace():
        token = after.split(None, 1)[0]
        return CommandError(
            stripped, f'unknown command "{prefix}{_shorten(token)}"; {prefix}help lists them'
        )
    typed = match.group(1).lower()
    name = _ALIASES.get(typed, typed)
    spec = _SPECS.get(name)
    if spec is None:
        return CommandError(
            stripped,
            f'unknown command "{prefix}{_shorten(match.group(1))}"; {prefix}help lists them',
        )
    if _has_control(" ".join(tail.split())):
        return CommandError(stripped, f"{prefix}{name}: the line contains control characters")
    try:
        args = spec.parse(tail, ticket_prefix)
    except _ArgumentError as exc:
        return CommandError(stripped, f"{prefix}{name}: {exc}. Usage: {prefix}{spec.usage}")
    return Command(name, args, stripped)


def _check_prefix(prefix: str) -> None:
    if not prefix or any(ch.isspace() for ch in prefix):
        raise ValueError(f"command prefix must be non-empty and without whitespace: {prefix!r}")


def parse_commands(body: str, *, prefix: str = "#", ticket_prefix: str = "TKT-") -> ParsedBody:
    """Split an email body into its leading command block and the reply text.

    Args:
        body: the text body of the mail (quotes and signature may still be in it).
        prefix: what starts a command line; configurable per desk.
        ticket_prefix: the ticket token prefix ``#merge`` accepts, e.g. ``TKT-``.

    Returns:
        The commands and errors in the order written, and the reply text: the body from
        the first ordinary line on, with LF line endings and leading blank lines removed.

    Raises:
        ValueError: when ``prefix`` is empty or contains whitespace. Never for any body.
    """
    _check_prefix(prefix)
    text = body.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    start = len(lines)
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if not _is_command_line(stripped, prefix):
            start = index
            break
        parsed = _parse_line(stripped, prefix, ticket_prefix)
        if isinstance(parsed, Command):
            commands.append(parsed)
        else:
            errors.append(parsed)
    return ParsedBody(tuple(commands), tuple(errors), "\n".join(lines[start:]))


def format_command(cmd: Command, *, prefix: str = "#", ticket_prefix: str = "TKT-") -> str:
    """Write a command back as the line an agent would type; the inverse of parsing.

    ``parse_commands(format_command(c)).commands == (c,)`` for every command that
    :func:`parse_commands` can produce (with the same prefixes).

    Args:
        cmd: a command with a canonical name and normalised arguments.
        prefix: the command prefix.
        ticket_prefix: the ticket token prefix used to write ``#merge``.

    Returns:
        One line without a line ending.

    Raises:
        ValueError: when ``cmd`` is not a command :func:`parse_commands` could produce.
    """
    _check_prefix(prefix)
    if cmd.name not in _SPECS:
        raise ValueError(f"unknown command name: {cmd.name!r}")
    args = cmd.args
    if cmd.name == "merge" and len(args) == 1 and args[0].isdigit():
        args = (f"{ticket_prefix}{int(args[0]):06d}",)
    elif cmd.name in ("link", "unlink") and len(args) == 2 and args[1].isdigit():
        args = (args[0], f"{ticket_prefix}{int(args[1]):06d}")
    elif cmd.name == "time" and args:
        args = (f"{args[0]}m", *args[1:])  # the unit keeps a text like "30 calls" apart
    line = " ".join((f"{prefix}{cmd.name}", *args))
    if parse_commands(line, prefix=prefix, ticket_prefix=ticket_prefix).commands != (cmd,):
        raise ValueError(f"not a valid {cmd.name} command: {cmd.args!r}")
    return line


def describe_commands(prefix: str = "#") -> str:
    """Return the command list an agent gets in answer to ``#help``, one per line."""
    return "\n".join(f"{prefix}{spec.usage} - {spec.summary}" for spec in _SPECS.values())
