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
    """The reply parser's three regexes: they depend only on the languages and options."""
    probe = _ReplyText(text="", languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True)
    return probe.HEADER_REGEX, probe.SIGNATURE_REGEX, probe.DISCLAIMERS_REGEX


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
