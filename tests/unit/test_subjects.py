"""Tests for helpdesk.subjects: what the gateway strips is what the composer strips.

The round trip at the end is the contract between the two directions: a subject we send,
answered by any client in any language, reads back as the same topic and names exactly
our ticket.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from helpdesk.refs import find_ticket_numbers, format_ticket_ref
from helpdesk.subjects import (
    REPLY_WORDS,
    SUBJECT_MAX,
    clean_subject,
    outbound_subject,
    strip_reply_prefixes,
    topic,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

# --- reply prefixes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "Re:", "RE:", "re:", "Fwd:", "FWD:", "Fw:", "FW:", "AW:", "WG:", "SV:", "VS:", "Antw:",
        "Antwort:", "R:", "RIF:", "TR:", "Enc:", "RES:", "Odp:", "Ynt:", "回复:", "回覆:", "答复:",
        "転送:", "返信:", "Réf:", "RÉF :", "Réf. :", "Re[2]:", "RE [12] :", "Re：", "返信：",
        "RE :", "Re:Re:", "Re: Re:", "AW: WG: Re:", "Re: Fwd: RE:", "RV:", "Re(2):", "Doorst:",
    ],
)  # fmt: skip
def test_reply_prefixes_are_stripped(prefix: str) -> None:
    assert strip_reply_prefixes(f"{prefix} Printer on fire") == "Printer on fire"
    assert strip_reply_prefixes(f"{prefix}Printer on fire") == "Printer on fire"


@pytest.mark.parametrize(
    "subject",
    [
        "Reply: needed", "Rework: plan", "Ref: invoice 42", "Research: results", "Fwding: x",
        "Tracking: 1", "[list] Re: hello", "Meeting Re: budget", "Resolution: done", "I: Ordine",
    ],
)  # fmt: skip
def test_words_that_only_look_like_prefixes_are_kept(subject: str) -> None:
    assert strip_reply_prefixes(subject) == subject


def test_many_stacked_prefixes_are_all_stripped() -> None:
    assert strip_reply_prefixes("Re: AW: " * 20_000 + "x") == "x"


def test_subject_that_is_only_prefixes_becomes_empty() -> None:
    assert strip_reply_prefixes("  Re: Re:  ") == ""
    assert strip_reply_prefixes("") == ""


_PREFIXES = st.sampled_from(["Re: ", "RE:", "Fwd: ", "AW: ", "SV:", "回复：", "Re[3]: ", "TR : "])


@given(st.text())
def test_strip_reply_prefixes_is_idempotent(subject: str) -> None:
    once = strip_reply_prefixes(subject)
    assert strip_reply_prefixes(once) == once


@given(st.lists(_PREFIXES, min_size=1, max_size=4), st.text())
def test_adding_reply_prefixes_does_not_change_the_stripped_subject(
    prefixes: list[str], subject: str
) -> None:
    assert strip_reply_prefixes("".join(prefixes) + subject) == strip_reply_prefixes(subject)


# --- outbound subject -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Printer on fire", "[TKT-000042] Printer on fire"),
        ("Re: AW: Printer on fire", "[TKT-000042] Printer on fire"),
        ("Re: [TKT-000042] Printer on fire", "[TKT-000042] Printer on fire"),
        ("[tkt-42] Re: [TKT-000042] Printer", "[TKT-000042] Printer"),
        ("Re: [TKT-000007] merged away", "[TKT-000042] merged away"),
        ("Printer\r\n on\tfire ", "[TKT-000042] Printer on fire"),
        ("see TKT-9 please", "[TKT-000042] see please"),
        ("Re: [TKT-000042] TKT-42 again", "[TKT-000042] again"),
        ("", "[TKT-000042]"),
        ("Re:", "[TKT-000042]"),
    ],
)
def test_outbound_subject(subject: str, expected: str) -> None:
    assert outbound_subject(42, subject) == expected


def test_outbound_subject_uses_prefix_and_digits() -> None:
    assert outbound_subject(5, "Re: [HD#5] x", prefix="HD#", digits=3) == "[HD#005] x"


@given(st.integers(1, 10**9), st.text())
def test_outbound_subject_is_tagged_once_and_stable(number: int, subject: str) -> None:
    first = outbound_subject(number, subject)
    tag = f"[{format_ticket_ref(number)}]"
    assert first.startswith(tag)
    assert "\n" not in first and "\r" not in first
    assert find_ticket_numbers(first)[0] == number
    assert outbound_subject(number, first) == first
    assert outbound_subject(number, "Re: " + first) == first
    assert outbound_subject(number, "AW: Re: " + first) == first


@given(st.integers(1, 10**9), st.text(st.characters(exclude_characters="[]")))
def test_outbound_subject_has_exactly_one_tag(number: int, subject: str) -> None:
    assume("TKT-" not in subject.upper())
    assert outbound_subject(number, f"Re: [TKT-{number}] {subject}").count("[TKT-") == 1

# --- the topic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ("Re: AW: Printer", "Printer"), ("SV: VS: Antw: Fwd: WG: x", "x"), ("返信: y", "y"),
    ("RE: [TKT-000042] Printer", "Printer"), ("Re[2]: z", "z"), ("   ", ""),
    ("Regarding the bill", "Regarding the bill"), ("[TKT-1] Re: [TKT-1] AW: x", "x"),
    ("RIF: ENC: YNT: Réf. : 回覆: 転送: x", "x"), ("Printer\r\n on\tfire", "Printer on fire"),
])
def test_clean_subject_strips_reply_prefixes_and_our_tokens(raw: str, clean: str) -> None:
    assert clean_subject(raw) == clean


def test_clean_subject_keeps_other_prefixes_tokens() -> None:
    assert clean_subject("[HD#5] Re: TKT-7", prefix="HD#") == "TKT-7"
    assert clean_subject("Re: TKT-7", prefix="") == "TKT-7"


def test_topic_is_cut_to_the_limit_with_an_ellipsis() -> None:
    assert topic("x" * 500) == "x" * (SUBJECT_MAX - 1) + "\u2026"
    # the cut makes "TKT-12abc" (no token) into "TKT-12…" (a token), which goes too
    assert topic("a" * (SUBJECT_MAX - 8) + " TKT-12abc") == "a" * (SUBJECT_MAX - 8) + " \u2026"


@pytest.mark.parametrize("word", REPLY_WORDS)
def test_every_reply_word_the_gateway_knows_leaves_our_subjects(word: str) -> None:
    for written in (word, word.upper(), word.title()):
        assert outbound_subject(42, f"{written}: Printer") == "[TKT-000042] Printer"
        assert outbound_subject(42, f"{written} : {written}：Printer") == "[TKT-000042] Printer"


# --- the round trip: what we send, answered, reads back as what we meant ----------------------

_REPLY = st.builds("{}{}{} ".format, st.sampled_from(REPLY_WORDS).map(str.title),
                   st.sampled_from(["", "[2]", " ", "(3)"]), st.sampled_from([":", "：", " :"]))
_TICKET_PREFIXES = st.sampled_from(["TKT-", "HD#", "req.", "T"])


@given(st.integers(1, 10**12), st.text(), _TICKET_PREFIXES, st.integers(1, 9),
       st.lists(_REPLY, max_size=3))
@example(42, "see TKT-9 and [TKT-000007]", "TKT-", 6, ["Re: "])
@example(42, "a" * (SUBJECT_MAX - 8) + " TKT-12abc", "TKT-", 6, [])
@example(7, "Re: \u200bx\r\nRE: y", "TKT-", 6, ["AW: "])
def test_an_answered_outbound_subject_reads_back_as_its_topic_and_our_ticket(
        number: int, inbound: str, prefix: str, digits: int, replies: list[str]) -> None:
    sent = outbound_subject(number, inbound, prefix, digits)
    answered = "".join(replies) + sent
    assert "\n" not in sent and "\r" not in sent
    assert sent.startswith(f"[{format_ticket_ref(number, prefix, digits)}]")
    assert find_ticket_numbers(answered, prefix) == (number,)
    assert clean_subject(answered, prefix) == topic(inbound, prefix)
    assert outbound_subject(number, answered, prefix, digits) == sent
    if len(clean_subject(inbound, prefix)) <= SUBJECT_MAX:
        assert topic(inbound, prefix) == clean_subject(inbound, prefix)


@given(st.text(), _TICKET_PREFIXES)
def test_clean_subject_is_idempotent_and_leaves_no_token(subject: str, prefix: str) -> None:
    once = clean_subject(subject, prefix)
    assert clean_subject(once, prefix) == once
    assert find_ticket_numbers(once, prefix) == ()
    assert len(topic(subject, prefix)) <= SUBJECT_MAX


@given(st.integers(1, 10**9), st.text(st.characters(exclude_characters="[]")))
def test_a_reply_to_another_ticket_gets_only_ours(number: int, subject: str) -> None:
    assume(number != 7)
    sent = outbound_subject(number, f"Re: [TKT-000007] {subject}")
    assert find_ticket_numbers(sent) == (number,)


# --- the shared corpus ------------------------------------------------------------------------


def _corpus_subjects() -> list[str]:
    expected = CORPUS / "expected.jsonl"
    if not expected.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared corpus missing at {CORPUS} (CI=true)")
        pytest.skip(f"shared corpus not found at {CORPUS}")
    rows = [json.loads(line) for line in expected.read_text("utf-8").splitlines() if line]
    return [row["subject"] for row in rows if row.get("subject")]


def test_corpus_subjects_get_one_tag_and_lose_their_reply_prefixes() -> None:
    subjects = _corpus_subjects()
    assert subjects
    replies = [s for s in subjects if s.lower().startswith(("re:", "fwd:", "fw:"))]
    assert replies, "the corpus should hold some replies"
    for subject in subjects:
        tagged = outbound_subject(42, subject)
        assert tagged.count("[TKT-000042]") == 1
        assert outbound_subject(42, "Re: " + tagged) == tagged
        assert find_ticket_numbers("Re: " + tagged) == (42,)
    for subject in replies:
        assert not strip_reply_prefixes(subject).lower().startswith(("re:", "fwd:", "fw:"))
