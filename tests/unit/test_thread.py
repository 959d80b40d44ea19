"""Tests for mailgate.thread: subject tokens, reply prefixes, Message-IDs, the threading rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mailgate.thread import (
    MAX_TICKET_NUMBER,
    ThreadDecision,
    ThreadFacts,
    decide_thread,
    find_ticket_numbers,
    format_ticket_ref,
    normalise_message_id,
    outbound_subject,
    split_references,
    strip_reply_prefixes,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

# --- reply prefixes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "Re:", "RE:", "re:", "Fwd:", "FWD:", "Fw:", "FW:", "AW:", "WG:", "SV:", "VS:", "Antw:",
        "Antwort:", "R:", "RIF:", "TR:", "Enc:", "RES:", "Odp:", "Ynt:", "回复:", "回覆:", "答复:",
        "転送:", "返信:", "Réf:", "RÉF :", "Réf. :", "Re[2]:", "RE [12] :", "Re：", "返信：",
        "RE :", "Re:Re:", "Re: Re:", "AW: WG: Re:", "Re: Fwd: RE:",
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


# --- ticket tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "numbers"),
    [
        ("[TKT-000042] Printer", (42,)),
        ("Re: printer TKT-42", (42,)),
        ("tkt-0042: anyone?", (42,)),
        ("Tkt-42, TKT-7 and [tkt-000042]", (42, 7)),
        ("(TKT-5)", (5,)),
        ("TKT-12-3", (12,)),
        ("XTKT-1", ()),
        ("TKT-12abc", ()),
        ("ÄTKT-1", ()),
        ("TKT-1é", ()),
        ("TKT_1 TKT-", ()),
        ("TKT-0 TKT-000000", ()),
        (f"TKT-{MAX_TICKET_NUMBER + 1}", ()),
        (f"TKT-{MAX_TICKET_NUMBER}", (MAX_TICKET_NUMBER,)),
        ("TKT-" + "0" * 5000 + "9", (9,)),
        ("TKT-" + "9" * 5000, ()),
        ("TKT-٤٢", ()),
        ("no token here", ()),
    ],
)
def test_find_ticket_numbers(subject: str, numbers: tuple[int, ...]) -> None:
    assert find_ticket_numbers(subject) == numbers


def test_ticket_prefix_is_configurable_and_matched_literally() -> None:
    assert find_ticket_numbers("[HD#12] x HD#3", prefix="HD#") == (12, 3)
    assert find_ticket_numbers("R.T-5 and RxT-6", prefix="R.T-") == (5,)
    assert find_ticket_numbers("TKT-5", prefix="HD#") == ()
    assert find_ticket_numbers("case 5", prefix="") == ()


@pytest.mark.parametrize(
    ("number", "digits", "ref"),
    [(42, 6, "TKT-000042"), (1234567, 6, "TKT-1234567"), (0, 6, "TKT-000000"), (7, 1, "TKT-7")],
)
def test_format_ticket_ref_pads_to_digits(number: int, digits: int, ref: str) -> None:
    assert format_ticket_ref(number, digits=digits) == ref


def test_format_ticket_ref_refuses_negative_numbers_and_zero_digits() -> None:
    with pytest.raises(ValueError):
        format_ticket_ref(-1)
    with pytest.raises(ValueError):
        format_ticket_ref(1, digits=0)


@given(st.integers(1, MAX_TICKET_NUMBER), st.sampled_from(["TKT-", "HD#", "req.", "T"]))
def test_formatted_ref_is_found_again(number: int, prefix: str) -> None:
    ref = format_ticket_ref(number, prefix)
    assert find_ticket_numbers(f"Re: [{ref}] hi", prefix) == (number,)
    assert find_ticket_numbers(ref.lower(), prefix) == (number,)


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
        ("see TKT-9 please", "[TKT-000042] see TKT-9 please"),
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


# --- Message-IDs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@example.com>", "<abc@example.com>"),
        ("  <AbC.123@Example.COM>  ", "<AbC.123@Example.COM>"),
        ("<abc@example.com> (added by relay)", "<abc@example.com>"),
        ("(comment (nested)) <x@y>", "<x@y>"),
        ("< abc@example.com >", "<abc@example.com>"),
        ("abc@example.com", "<abc@example.com>"),
        ("<1234.5678>", "<1234.5678>"),
        ("<a@b> <c@d>", "<a@b>"),
        ("<名前@例え.jp>", "<名前@例え.jp>"),
        ("", None),
        ("   ", None),
        ("<>", None),
        ("garbage", None),
        ("<a b@c>", None),
        ("a b@c", None),
        ("<a\x00@b>", None),
        ("<" + "a" * 1000 + "@b>", None),
        ("(only <x@y> in a comment)", None),
    ],
)
def test_normalise_message_id(value: str, expected: str | None) -> None:
    assert normalise_message_id(value) == expected


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("<a@b> <c@d>\r\n\t<e@f>", ("<a@b>", "<c@d>", "<e@f>")),
        ("<a@b><c@d>", ("<a@b>", "<c@d>")),
        ("<a@b> <c@d> <a@b>", ("<a@b>", "<c@d>")),
        ("<a@b> (message from John <john@example.com>)", ("<a@b>",)),
        ("<a@b> (x (nested) <c@d>) <e@f>", ("<a@b>", "<e@f>")),
        ("<a@b> (unclosed <c@d>", ("<a@b>",)),
        ("<a@b> <> < bad id > <c@d>", ("<a@b>", "<c@d>")),
        ("a@b, c@d", ("<a@b>", "<c@d>")),
        ("", ()),
        ("no ids at all", ()),
    ],
)
def test_split_references(value: str, ids: tuple[str, ...]) -> None:
    assert split_references(value) == ids


@given(st.text())
def test_message_id_helpers_never_raise_and_return_bracketed_ids(value: str) -> None:
    single = normalise_message_id(value)
    assert single is None or (single.startswith("<") and single.endswith(">"))
    for found in split_references(value):
        assert normalise_message_id(found) == found


# --- the threading decision -------------------------------------------------------------------


def test_signed_message_id_wins_without_participation() -> None:
    decision = decide_thread(
        ThreadFacts(signed_ref_ticket=1, plus_address_ticket=2, known_message_ticket=3,
                    subject_tickets=(4,))
    )  # fmt: skip
    assert decision.ticket == 1
    assert decision.via == "signed_ref"
    assert "plus-address for TKT-000002 overruled" in decision.reason


def test_signed_plus_address_is_trusted_without_participation() -> None:
    decision = decide_thread(ThreadFacts(plus_address_ticket=2, subject_tickets=(4,)))
    assert decision == ThreadDecision(2, "plus_address", "signed plus-address for TKT-000002")


def test_known_message_id_needs_a_participant() -> None:
    facts = ThreadFacts(known_message_ticket=3, sender_participates=frozenset({3}))
    assert decide_thread(facts).via == "message_id"
    stranger = decide_thread(ThreadFacts(known_message_ticket=3))
    assert stranger.ticket is None
    assert stranger.via == "new"
    assert "Message-ID reference to TKT-000003 ignored: sender is not a participant" in (
        stranger.reason
    )


def test_subject_token_needs_a_participant() -> None:
    decision = decide_thread(ThreadFacts(subject_tickets=(42,)))
    assert decision == ThreadDecision(
        None, "new", "new ticket: subject token TKT-000042 ignored: sender is not a participant"
    )


def test_subject_token_from_participant_threads() -> None:
    facts = ThreadFacts(subject_tickets=(42,), sender_participates=frozenset({42}))
    assert decide_thread(facts) == ThreadDecision(
        42, "subject", "subject token TKT-000042, sender is participant"
    )


def test_agent_may_thread_by_message_id_or_subject_anywhere() -> None:
    assert decide_thread(ThreadFacts(known_message_ticket=3, sender_is_agent=True)).ticket == 3
    decision = decide_thread(ThreadFacts(subject_tickets=(9,), sender_is_agent=True))
    assert (decision.ticket, decision.via) == (9, "subject")
    assert "sender is agent" in decision.reason


def test_message_id_beats_subject_when_both_allowed() -> None:
    facts = ThreadFacts(known_message_ticket=3, subject_tickets=(4,),
                        sender_participates=frozenset({3, 4}))  # fmt: skip
    assert decide_thread(facts).ticket == 3


def test_first_subject_token_the_sender_takes_part_in_is_used() -> None:
    facts = ThreadFacts(known_message_ticket=1, subject_tickets=(4, 5, 6),
                        sender_participates=frozenset({5, 6}))  # fmt: skip
    decision = decide_thread(facts)
    assert (decision.ticket, decision.via) == (5, "subject")
    assert "Message-ID reference to TKT-000001 ignored" in decision.reason
    assert "subject token TKT-000004 ignored" in decision.reason


def test_no_facts_means_new_ticket() -> None:
    assert decide_thread(ThreadFacts()) == ThreadDecision(
        None, "new", "new ticket: no thread reference"
    )


def test_reason_uses_configured_prefix_and_digits() -> None:
    decision = decide_thread(ThreadFacts(subject_tickets=(7,)), prefix="HD#", digits=3)
    assert "HD#007" in decision.reason


_TICKET = st.integers(1, 50)
FACTS = st.builds(
    ThreadFacts,
    signed_ref_ticket=st.none() | _TICKET,
    plus_address_ticket=st.none() | _TICKET,
    known_message_ticket=st.none() | _TICKET,
    subject_tickets=st.lists(_TICKET, max_size=4, unique=True).map(tuple),
    sender_participates=st.frozensets(_TICKET, max_size=6),
    sender_is_agent=st.booleans(),
)


@given(FACTS)
def test_decision_ticket_is_none_exactly_when_new(f: ThreadFacts) -> None:
    decision = decide_thread(f)
    assert (decision.ticket is None) == (decision.via == "new")
    assert decision.reason


@given(FACTS)
def test_decision_only_picks_a_ticket_the_facts_name(f: ThreadFacts) -> None:
    decision = decide_thread(f)
    named = {f.signed_ref_ticket, f.plus_address_ticket, f.known_message_ticket,
             *f.subject_tickets}  # fmt: skip
    assert decision.ticket is None or decision.ticket in named


@given(FACTS)
def test_unsigned_facts_need_participation_or_an_agent(f: ThreadFacts) -> None:
    decision = decide_thread(f)
    if decision.via in ("message_id", "subject"):
        assert decision.ticket is not None
        assert f.sender_is_agent or decision.ticket in f.sender_participates


@given(FACTS)
def test_stranger_without_signed_facts_never_lands_on_an_existing_ticket(f: ThreadFacts) -> None:
    stranger = ThreadFacts(
        known_message_ticket=f.known_message_ticket,
        subject_tickets=f.subject_tickets,
        sender_participates=frozenset(),
        sender_is_agent=False,
    )
    assert decide_thread(stranger).ticket is None


@given(FACTS, _TICKET)
def test_verified_signed_reference_always_wins(f: ThreadFacts, signed: int) -> None:
    decision = decide_thread(
        ThreadFacts(signed, f.plus_address_ticket, f.known_message_ticket, f.subject_tickets,
                    f.sender_participates, f.sender_is_agent)
    )  # fmt: skip
    assert (decision.ticket, decision.via) == (signed, "signed_ref")


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
    for subject in replies:
        assert not strip_reply_prefixes(subject).lower().startswith(("re:", "fwd:", "fw:"))
