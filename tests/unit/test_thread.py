"""Tests for mailgate.thread: Message-IDs and References, the threading rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailgate.thread import (
    ThreadDecision,
    ThreadFacts,
    decide_thread,
    normalise_message_id,
    split_references,
)

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
