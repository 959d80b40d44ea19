"""The reply parser's patterns, tried only where a match can start, find what they found.

`mailgate._reply` puts a guard in front of the library's header and signature patterns
(a match must start at a line start, a line break, or for the signature white space) once
it has read off their parse trees that every match does. These tests hold the guarded
patterns to the library's own on real mail texts and on generated ones, and fail when a
new release of the library changes the patterns' shape so that the guard is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mailparser_reply import EmailMessage

from mailgate import _reply
from mailgate.parse import parse_message

LIBRARY = EmailMessage(text="", languages=list(_reply._REPLY_LANGUAGES), keep_hyphen_lists=True)
HEADER, SIGNATURE = LIBRARY.HEADER_REGEX, LIBRARY.SIGNATURE_REGEX
GUARDED_HEADER, GUARDED_SIGNATURE, _ = _reply._regexes()

FRAGMENTS = [
    "On Mon, 1 Jan 2024 at 10:00, Ann <ann@example.org> wrote:", "Am 1. Jan. schrieb Bob:",
    "Le 1 janv. 2024, Eve a écrit :", "El 1 ene 2024, Ana escribió:", "From: Ann", "Sent: today",
    "To: support", "Subject: hi", "Von: Ann", "Gesendet: heute", "De : Eve", "Objet : salut",
    "-----Original Message-----", "> quoted line", ">> deeper", "-- ", "--", "_" * 40,
    "Sent from my iPhone", "Best regards,", "Kind Regards", "Thanks,", "Mit freundlichen Grüßen",
    "Cordialement", "Saludos,", "Regards,", "Hello,", "some words of text", "x" * 120, "",
    "   ", "\t", "* From: *", "CAUTION: this mail", "Disclaimer: mail",
]


def assert_same(text: str) -> None:
    assert GUARDED_HEADER.findall(text) == HEADER.findall(text)
    ours, theirs = GUARDED_SIGNATURE.search(text), SIGNATURE.search(text)
    assert (ours and (ours.span(), ours.groups())) == (theirs and (theirs.span(), theirs.groups()))


def test_the_guards_are_in_use() -> None:
    assert GUARDED_HEADER.pattern.startswith("(?:^|(?=\\n))")
    assert GUARDED_SIGNATURE.pattern.startswith("(?:^|(?=\\s))")


def test_a_pattern_that_can_start_anywhere_keeps_no_guard() -> None:
    anywhere = re.compile(r"^On .* wrote:$|Forwarded message", re.MULTILINE)
    assert not _reply._starts_at(anywhere, spaces=False)
    assert _reply._guarded(anywhere, "^", spaces=False) is anywhere
    assert not _reply._starts_at(re.compile(r"\s*^--", re.MULTILINE), spaces=False)
    assert _reply._starts_at(re.compile(r"\s*^--", re.MULTILINE), spaces=True)
    assert _reply._starts_at(re.compile(r"(?:^|\n)(?!x)[ab]{2,}", re.MULTILINE), spaces=False)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FRAGMENTS),
                          st.sampled_from(["\n", " ", "\n\n", "\r\n", ""])), max_size=12))
def test_generated_texts(parts: list[tuple[str, str]]) -> None:
    assert_same("".join(a + b for a, b in parts))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("OnAmLe wrote:schrieb>-_\n \tFrom:Sent:To*ab")),
               max_size=200))
def test_generated_character_soup(text: str) -> None:
    assert_same(text)


def test_real_mail_texts(corpus: Path) -> None:
    texts = 0
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.suffix in {".eml", ".txt", ".msg", ""}:
            try:
                text = parse_message(path.read_bytes()).text
            except Exception:  # the corpus test covers parsing; here only its texts count
                continue
            bounded = _reply._bounded_lines(text[:_reply._REPLY_PARSE_LIMIT])
            assert_same(bounded)
            texts += 1
    assert texts > 300


@pytest.mark.parametrize("text", [
    "Thanks!\n\nOn Mon, 1 Jan 2024, Ann <ann@example.org> wrote:\n> old\n",
    "New text\n\n-----Original Message-----\nFrom: Ann\nSent: today\nTo: us\n\nold",
    "Hi\n\n--\nAnn\nACME",
])
def test_visible_text_is_the_new_part(text: str) -> None:
    assert _reply.visible_text(text).split("\n")[0] in {"Thanks!", "New text", "Hi"}
    assert "old" not in _reply.visible_text(text) and "ACME" not in _reply.visible_text(text)
