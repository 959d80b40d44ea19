"""Every reply in `mailgate.replies` carries an RFC 3463 enhanced code of its own class."""

from __future__ import annotations

import re

import pytest

from mailgate import replies

REPLIES = {name: value for name, value in vars(replies).items() if name.startswith("R")}
SHAPE = re.compile(r"(?P<code>[2-5])\d\d (?P<cls>[245])\.\d{1,3}\.\d{1,3} \S")


def test_there_are_replies_to_check() -> None:
    assert len(REPLIES) >= 10


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_the_enhanced_code_class_matches_the_reply_code(name: str) -> None:
    value = REPLIES[name]
    match = SHAPE.match(value)
    assert match, f"{name} = {value!r} has no enhanced status code"
    assert match["code"] == match["cls"], f"{name}: {value!r}"
    assert name.startswith(f"R{value[:3]}_"), f"{name} is named for another code"
