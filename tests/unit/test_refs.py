"""Tests for helpdesk.refs: ticket references written and read by one implementation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.refs import (
    MAX_TICKET_NUMBER,
    find_ticket_numbers,
    format_ticket_ref,
    parse_ticket_ref,
)

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


# --- one reference as a value (CLI arguments, #merge) -----------------------------------------


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("TKT-000042", 42), ("tkt-42", 42), ("42", 42), (" 0042 ", 42), ("[TKT-42]", 42),
        ("[ tkt-000042 ]", 42), (f"TKT-{MAX_TICKET_NUMBER}", MAX_TICKET_NUMBER),
        ("TKT-0", None), ("0", None), (f"{MAX_TICKET_NUMBER + 1}", None), ("", None),
        ("TKT-", None), ("TKT-42 and TKT-7", None), ("Re: [TKT-42] x", None), ("HD#42", None),
        ("TKT-42abc", None), ("-42", None), ("٤٢", None),
    ],
)  # fmt: skip
def test_parse_ticket_ref_reads_exactly_one_reference(value: str, number: int | None) -> None:
    assert parse_ticket_ref(value) == number


@given(st.integers(1, MAX_TICKET_NUMBER), st.sampled_from(["TKT-", "HD#", "req.", "T"]),
       st.integers(1, 12))
def test_every_written_reference_is_read_back(number: int, prefix: str, digits: int) -> None:
    ref = format_ticket_ref(number, prefix, digits)
    assert parse_ticket_ref(ref, prefix) == number
    assert parse_ticket_ref(ref.upper(), prefix) == number
    assert parse_ticket_ref(f"[{ref}]", prefix) == number
    assert parse_ticket_ref(str(number), prefix) == number
    assert find_ticket_numbers(ref, prefix) == (number,)


@given(st.text(max_size=40), st.sampled_from(["TKT-", "HD#"]))
def test_a_parsed_reference_is_one_the_subject_search_finds(value: str, prefix: str) -> None:
    number = parse_ticket_ref(value, prefix)
    if number is not None and prefix.lower() in value.lower():
        assert find_ticket_numbers(value, prefix) == (number,)
