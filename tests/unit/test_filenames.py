"""Tests for helpdesk.filenames: one cleaning rule for every attachment name we store."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpdesk.filenames import MAX_FILENAME_CHARS, clean_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\report.pdf", "report.pdf"),
        ("..", "attachment-3.bin"),
        ("", "attachment-3.bin"),
        ("a\x00b\x1fc.txt", "abc.txt"),
        ("  .bashrc  ", "bashrc"),
        (". .bashrc", "bashrc"),
        ("Ärger über Öl.pdf", "Ärger über Öl.pdf"),
        ("A\u0308rger.pdf", "Ärger.pdf"),
        ("a\u00a0b\u2028c.pdf", "a b c.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("e\u200b\u0301.txt", "é.txt"),
    ],
)  # fmt: skip
def test_clean_filename(name: str, expected: str) -> None:
    assert clean_filename(name, 3) == expected


def test_a_nameless_part_is_named_by_its_position_and_type() -> None:
    assert clean_filename("", 2, "application/pdf") == "attachment-2.pdf"
    assert clean_filename("/", 5, "image/png") == "attachment-5.png"


def test_long_names_are_cut_keeping_the_extension() -> None:
    safe = clean_filename("x" * 300 + ".pdf")
    assert len(safe) == MAX_FILENAME_CHARS
    assert safe.endswith("x.pdf")


@given(st.text(), st.integers(1, 99))
@example("e\u200b\u0301", 1)
@example(". .x", 1)
def test_a_clean_name_is_safe_and_stays_as_it_is(name: str, index: int) -> None:
    safe = clean_filename(name, index)
    assert safe and len(safe) <= MAX_FILENAME_CHARS
    assert "/" not in safe and "\\" not in safe
    assert not safe.startswith((".", " ")) and not safe.endswith(" ")
    assert all(unicodedata.category(c)[0] != "C" for c in safe)
    assert all(c == " " or not c.isspace() for c in safe)
    assert clean_filename(safe, index) == safe
