"""Strip quoted history and signature from a mail's text, leaving the new part."""

from __future__ import annotations

import functools
import re
from typing import Any

from mailparser_reply import EmailMessage as _ReplyText

_REPLY_PARSE_LIMIT = 32_000  # the reply parser reads at most this much of a text
_LINE_LIMIT = 200  # longer lines reach the reply parser split (its regexes are quadratic)
_JOIN = "\u2063"  # marks where a long line was split for the reply parser
_REPLY_LANGUAGES = ("en", "de", "fr", "es")  # each language costs ~0.1 ms a mail
_QUOTED_LINE = re.compile(r"^[ \t]*>.*\n?", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n{3,}")
_SPACE_RUN = re.compile(r"[^\S\n]{8,}")


def visible_text(text: str) -> str:
    """The new part of ``text``: quoted history and signature removed; ``text`` on failure.

    The library's regexes are quadratic in line length and in whitespace runs, so it sees a
    bounded copy: long lines are split at marked points (joined again afterwards), whitespace
    runs are shortened, and only the first ``_REPLY_PARSE_LIMIT`` characters are read.
    """
    whole = text.strip()
    if not whole:
        return ""
    try:
        head = _bounded_lines(text[:_REPLY_PARSE_LIMIT])
        found = _reader(head).read().replies
    except Exception:  # third-party regexes: never lose the text
        return whole
    if not found or (len(text) > _REPLY_PARSE_LIMIT and len(found) < 2):
        body = text  # no quoted history inside the part the parser saw
    else:
        body = found[0].body.replace("\n" + _JOIN, "").replace(_JOIN, "")
    body = _BLANK_RUN.sub("\n\n", _QUOTED_LINE.sub("", body)).strip()
    return body or whole


@functools.cache
def _regexes() -> tuple[Any, Any, Any]:
    """The reply parser's three regexes: they depend only on the languages and options.

    The header and signature patterns are tried only where a match can begin. Python's
    ``re`` tries a pattern at every position of a text, each of the header pattern's few
    dozen alternatives in turn, though every one of them starts at a line start or a line
    break (the signature's at a line start or a space); that scan was more than half of
    what a reply's visible text cost. A guard in front rejects every other position at its
    first step. The matches are the same, as long as the library's patterns keep that
    shape: `_starts_at` checks it on the parsed pattern, and a pattern that lost it is
    used as it is.
    """
    probe = _ReplyText(text="", languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True)
    header, signature = probe.HEADER_REGEX, probe.SIGNATURE_REGEX
    return (_guarded(header, r"^|(?=\n)", spaces=False),
            _guarded(signature, r"^|(?=\s)", spaces=True), probe.DISCLAIMERS_REGEX)


def _guarded(pattern: re.Pattern[str], guard: str, *, spaces: bool) -> re.Pattern[str]:
    """``pattern`` behind ``guard`` where every match of it must start there, else as is."""
    if not pattern.flags & re.MULTILINE or not _starts_at(pattern, spaces=spaces):
        return pattern
    return re.compile(f"(?:{guard})(?:{pattern.pattern})", pattern.flags)


def _starts_at(pattern: re.Pattern[str], *, spaces: bool) -> bool:
    """Whether every match of ``pattern`` starts at a line start or a line break (or, with
    ``spaces``, at any white space), read off its parse tree; False when in doubt."""
    try:
        from re import _constants as c  # type: ignore[attr-defined]
        from re import _parser  # type: ignore[attr-defined]

        def char(op: Any, arg: Any) -> bool:
            if op is c.LITERAL:
                return arg == 10 or (spaces and chr(arg).isspace())
            return spaces and op is c.CATEGORY and arg is c.CATEGORY_SPACE

        def first(items: list[Any]) -> bool:
            for op, arg in items:
                if op in (c.ASSERT, c.ASSERT_NOT):
                    continue  # a look-around takes no text: the next item starts the match
                if op is c.AT:
                    return arg in (c.AT_BEGINNING, c.AT_BEGINNING_STRING)
                if op in (c.LITERAL, c.CATEGORY):
                    return char(op, arg)
                if op is c.IN:
                    return all(char(o, a) for o, a in arg)
                if op is c.SUBPATTERN:
                    return first(list(arg[-1]))
                if op is c.BRANCH:
                    return all(first(list(branch)) for branch in arg[1])
                if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                    low, _, body = arg
                    if not first(list(body)):
                        return False
                    if low >= 1:
                        return True
                    continue  # may match nothing: what follows may start the match too
                return False
            return False

        return first(list(_parser.parse(pattern.pattern, pattern.flags)))
    except Exception:  # the parser is the standard library's own, not a promise
        return False


def _reader(text: str) -> _ReplyText:
    """The library's reader for ``text``, given the regexes built once.

    It builds them from its language tables for every message (a seventh of its time).
    """
    reader = _ReplyText(text=text, languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True)
    reader._header_regex, reader._signature_regex, reader._disclaimers_regex = _regexes()
    return reader


def _bounded_lines(text: str) -> str:
    lines = []
    for raw in text.replace(_JOIN, "").split("\n"):
        line = _SPACE_RUN.sub(" ", raw.rstrip())
        while len(line) > _LINE_LIMIT:
            cut = line.rfind(" ", _LINE_LIMIT // 2, _LINE_LIMIT)
            cut = cut if cut > 0 else _LINE_LIMIT
            lines.append(line[:cut])
            line = _JOIN + line[cut:]
        lines.append(line)
    return _BLANK_RUN.sub("\n\n", "\n".join(lines))
