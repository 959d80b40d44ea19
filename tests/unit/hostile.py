"""Hypothesis strategies for text an attacker controls in mail headers (shared by tests)."""

from __future__ import annotations

import base64

from hypothesis import strategies as st


def nested(inner: str) -> str:
    """An encoded word whose decoded text is itself an encoded word."""
    return "=?utf-8?b?" + base64.b64encode(inner.encode()).decode() + "?="


PIECES = st.sampled_from([
    "\r\n", "\r", "\n", "\r\n\r\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x1b",
    "\t", " ", "Bcc: evil@example.org", ":", "<", ">", '"', "\\", "=?", "?=", "@",
    "=?utf-8?q?x=0D=0ABcc:_y@z?=", nested("=?utf-8?q?x=0D=0ABcc:_y@z?="),
    "=?utf-8?q?=0D=0A=0D=0Abody?=", "=?utf-8?b?DQpCY2M6IHlAego=?=", "\ud800", "é", "日本",
    "👍", "\u202e", "\ufeff", "x" * 90, "--", "\r\n--===============0==\r\n", ".\r\n",
])
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=14).map("".join)
"""Any code point (lone surrogates too), weighted towards line separators, control
characters and encoded words (nested ones too) that decode to them."""

MSG_IDS = st.one_of(
    HOSTILE,
    st.sampled_from(["<alice-1@example.org>", "<CAH+x=Y_z@mail.gmail.com>", "<a@[1.2.3.4]>",
                     "<" + "y" * 120 + "@example.org>", "<a@=?utf-8?q?b=0D=0ABcc:_c?=>",
                     "<=?utf-8?q?b=0D=0ABcc:_c?=@x>", "<a@b>\r\nBcc: c@d", "<a@b\x00>"]),
)
"""Message-IDs as an inbound mail may carry them: valid, hostile or garbage."""
