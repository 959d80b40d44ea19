"""The parse step's contract on hostile text (issue 19, items 2 and 3), without a database.

Everything ``parse_message`` returns as text is valid Unicode with no lone surrogate and no
NUL, and a charset that cannot decode is contained to its one encoded word, part or
filename. The same through the gateway and a database: tests/integration/test_hostile_text.py.
"""

from __future__ import annotations

import base64
import dataclasses
import encodings.aliases
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailgate import _headers
from mailgate.classify import classify
from mailgate.parse import Inbound, looks_like_mail, parse_message

CODECS = sorted(set(encodings.aliases.aliases.values()) | {"idna", "punycode", "undefined"})


def _texts(value: Any) -> Iterator[str]:
    """Every str inside a parse result (dataclasses, tuples, mappings)."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _texts(getattr(value, f.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _texts(item)
    elif hasattr(value, "items"):
        for k, v in value.items():
            yield k
            yield from _texts(v)


def _assert_clean(msg: Inbound) -> None:
    for text in _texts(msg):
        text.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in text


def test_clean_replaces_lone_surrogates_joins_pairs_and_drops_nuls() -> None:
    assert _headers.clean("a\ud83d\ude00b\ud800c\udcff\x00d") == "a\U0001f600b\ufffdc\ufffdd"
    assert _headers.clean("plain") == "plain"


@pytest.mark.parametrize("codec", CODECS)
def test_decode_bytes_never_raises_and_gives_clean_text(codec: str) -> None:
    for data in (b"caf\xe9 \xff\xfe\x00 +2AA- \\udc80 xn--", b"", b"\xed\xa0\x80", b"a" * 70):
        _headers.decode_bytes(data, codec).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(CODECS))
def test_decode_bytes_is_total(data: bytes, codec: str) -> None:
    assert "\x00" not in _headers.decode_bytes(data, codec)


def test_an_undecodable_word_in_one_header_keeps_every_other_header() -> None:
    msg = parse_message(b"From: =?punycode?Q?=FF?= <Jane@Example.org>\n"
                        b"Subject: =?idna?Q?=FF=FE?= and =?undefined?Q?x?=\n"
                        b"Auto-Submitted: auto-replied\nPrecedence: bulk\n"
                        b"List-Id: <l.example.org>\n\nbody\n")
    assert msg.sender is not None and msg.sender.email == "jane@example.org"
    assert msg.headers["auto-submitted"] == "auto-replied"
    assert msg.headers["precedence"] == "bulk"
    assert msg.headers["list-id"] == "<l.example.org>"
    assert msg.subject == "\u00ff\u00fe and x"  # decoded as UTF-8, else cp1252
    assert msg.defects == ()


def test_utf7_surrogates_become_replacement_characters_everywhere() -> None:
    msg = parse_message(b"From: =?utf-7?Q?A+2AA-?= <a@example.org>\n"
                        b"Cc: =?utf-7?Q?B+2AA-?= <b@example.org>\n"
                        b"Subject: =?utf-7?Q?S+2AA-?=\n"
                        b"Content-Type: text/plain; charset=utf-7\n\nT+2AA-\n")
    assert msg.sender is not None and msg.sender.name == "A\ufffd"
    assert [a.name for a in msg.cc] == ["B\ufffd"]
    assert (msg.subject, msg.text) == ("S\ufffd", "T\ufffd\n")
    _assert_clean(msg)


def test_one_bad_filename_keeps_the_other_attachments() -> None:
    msg = parse_message(
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: text/plain\n\nhi\n"
        b"--B\nContent-Type: application/pdf; name*=idna''%FF.pdf\n\nxx\n"
        b"--B\nContent-Type: application/pdf; name=\"=?punycode?Q?=FF?=.pdf\"\n\nyy\n"
        b"--B\nContent-Type: application/pdf; name=ok.pdf\n\nzz\n--B--\n")
    assert [a.filename for a in msg.attachments] == ["\u00ff.pdf", "\u00ff.pdf", "ok.pdf"]
    assert msg.text == "hi"


def test_a_body_in_an_undecodable_charset_keeps_its_text() -> None:
    msg = parse_message(b"From: a@example.org\nContent-Type: text/plain; charset=idna\n\n"
                        b"caf\xc3\xa9 \xff is broken\n")
    assert msg.text == "caf\u00c3\u00a9 \u00ff is broken\n"  # not UTF-8: cp1252
    assert msg.defects == ()


def test_over_long_ids_types_and_names_are_dropped_or_cut() -> None:
    long_id = b"<" + b"x" * 1000 + b"@example.org>"
    msg = parse_message(b"From: " + b"N" * 400 + b" <" + b"a" * 300 + b"@example.org>\n"
                        b"Message-ID: " + long_id + b"\nReferences: <ok@x> " + long_id +
                        b"\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
                        b"Content-Type: application/" + b"p" * 300 + b"; name=a.bin\n\n"
                        b"xx\n--B--\n")
    assert msg.message_id is None and msg.references == ("<ok@x>",)
    assert msg.sender is not None and len(msg.sender.name) == 255
    assert msg.attachments[0].content_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From: a@example.com\nSubject: a stray \x00 NUL\n\nhi\x00", True),
        (b"Received: from x\n\x00\x00\x00\x00", True),
        (b"\x00\x01\x02\x03binary\x04\x05", False),
        (b"text without headers but caf\xc3\xa9", True),
    ],
)
def test_only_input_without_headers_and_mostly_binary_is_not_mail(
        raw: bytes, expected: bool) -> None:
    assert looks_like_mail(raw) is expected


_HEADER_TEXT = st.lists(
    st.characters(codec="utf-8") | st.sampled_from(
        ["\ud800", "\udc80", "\x00", "=?utf-7?Q?+2AA-?=", "=?idna?Q?=FF?=", "\r\n"]),
    max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["From", "Subject", "Cc", "Message-ID",
                                           "Content-Type", "X-Any", "Auto-Submitted"]),
                          _HEADER_TEXT), max_size=6),
       _HEADER_TEXT)
def test_whatever_the_headers_hold_the_parse_is_clean_text(
        headers: list[tuple[str, str]], body: str) -> None:
    raw = b"".join(f"{k}: {v}\n".encode("utf-8", "surrogatepass") for k, v in headers)
    msg = parse_message(raw + b"\n" + body.encode("utf-8", "surrogatepass"))
    _assert_clean(msg)


def test_an_undecodable_charset_in_a_large_mail_keeps_text_and_attachment() -> None:
    """Over a megabyte, base64 bodies are kept out of the parser and put back after it."""
    body = base64.encodebytes(b"\x00" * 1_200_000)
    msg = parse_message(
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=B\n\n"
        b"--B\nContent-Type: text/plain; charset=idna\nContent-Transfer-Encoding: 8bit\n\n"
        b"caf\xe9\n--B\nContent-Type: application/octet-stream; name=big.bin\n"
        b"Content-Transfer-Encoding: base64\n\n" + body + b"--B--\n")
    assert msg.text == "caf\u00e9"
    assert [(a.filename, a.large is not None) for a in msg.attachments] == [("big.bin", True)]
    assert msg.defects == ()


def test_headers_of_a_mail_without_the_usual_ones_still_reach_classification() -> None:
    """No From, To or Subject: the mail is kept whole as text, its headers still read."""
    msg = parse_message(b"Auto-Submitted: auto-replied\nX-Any: =?idna?Q?=FF?=\n\nI am away.\n")
    assert msg.text == "Auto-Submitted: auto-replied\nX-Any: =?idna?Q?=FF?=\n\nI am away.\n"
    assert classify(msg, instance_id="helpdesk-1").kind == "auto_reply"


def test_many_encoded_words_decode_in_linear_time() -> None:
    """Joining adjacent words' bytes one by one was quadratic: 300,000 words took 10 s."""
    subject = b"=?utf-8?Q?ab?= " * 300_000
    started = time.perf_counter()
    msg = parse_message(b"From: a@example.org\nSubject: " + subject + b"\n\nx\n")
    assert time.perf_counter() - started < 5
    assert msg.subject == "ab" * 300_000


def test_an_unknown_charset_is_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """codecs.lookup tries an import for an unknown name (25 µs), every unique name again."""
    calls: list[str] = []
    monkeypatch.setattr(_headers.codecs, "lookup", lambda name: calls.append(name))
    assert _headers.decode_bytes(b"caf\xc3\xa9", "x-made-up-4711") == "caf\u00e9"
    assert calls == []


def test_headers_are_decoded_when_read_and_all_of_them_are_kept() -> None:
    msg = parse_message(b"From: a@example.org\nX-One: =?utf-8?Q?caf=C3=A9?=\n"
                        b"X-Two:  two\n  lines\nX-One: second\n\nx\n")
    assert dict(msg.headers) == {"from": "a@example.org", "x-one": "caf\u00e9",
                                 "x-two": "two lines"}
    assert "x-two" in msg.headers and "x-three" not in msg.headers
    assert msg.headers.get("x-three", "") == ""
