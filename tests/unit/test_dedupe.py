"""The idempotency key: same mail by any transport is one key; different mail never is."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailgate import _dedupe
from mailgate.ingest import dedupe_key
from mailgate.parse import parse_keyed

HEAD = b"From: a@example.org\r\nMessage-ID: <k@example.org>\r\nSubject: s\r\n"
lines = st.lists(st.text(alphabet="ab \t.é", max_size=20), min_size=1, max_size=30)


@given(body=lines)
@settings(max_examples=200, deadline=None)
def test_line_endings_and_trace_headers_do_not_change_the_key(body: list[str]) -> None:
    crlf = HEAD + b"\r\n" + "\r\n".join(body).encode() + b"\r\n"
    lf = b"Received: from mx by us\n" + (HEAD + b"\r\n").replace(b"\r\n", b"\n") \
        + "\n".join(body).encode() + b"\n"
    assert dedupe_key(crlf) == dedupe_key(lf)


@given(body=lines, chunk=st.integers(min_value=1, max_value=64))
@settings(max_examples=200, deadline=None)
def test_chunked_hashing_equals_whole_body_hashing(body: list[str], chunk: int) -> None:
    raw = HEAD + b"\r\n" + "\r\n".join(body).encode()
    assert _dedupe.dedupe_key(raw, chunk=chunk) == dedupe_key(raw)


def test_reused_message_id_with_other_content_gets_another_key() -> None:
    assert dedupe_key(HEAD + b"\r\nfirst\r\n") != dedupe_key(HEAD + b"\r\nsecond\r\n")


def test_message_id_is_returned_normalised_and_garbage_is_none() -> None:
    assert dedupe_key(HEAD + b"\r\nx")[1] == "<k@example.org>"
    assert dedupe_key(b"Message-ID: nonsense\r\n\r\nx")[1] is None
    assert dedupe_key(b"just text, no headers")[0].startswith("n:")


def test_mbox_from_line_is_ignored() -> None:
    raw = HEAD + b"\r\nbody\r\n"
    assert dedupe_key(b"From a@example.org Mon Nov 23 10:00:00 2026\n" + raw) == dedupe_key(raw)


def test_the_parse_gives_every_corpus_mail_the_key_it_gets_alone(corpus: Path) -> None:
    """`parse_keyed` reads the key's headers from the parse: it must be the same key, or
    a mail received before and after the change would not be recognised."""
    files = sorted(corpus.rglob("*.eml"))
    for path in files:
        raw = path.read_bytes()
        assert parse_keyed(raw)[1:] == dedupe_key(raw), path
    assert len(files) > 500


_HEADER_NAMES = st.sampled_from(["From", "from", "FROM", "Date", "Subject", "Message-ID",
                                 "message-id", "To", "X-Any", "", "From ", "Subject\t"])
_VALUE = st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_ENDING = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r\n"])


@st.composite
def _header_block(draw: st.DrawFn) -> bytes:
    out = draw(st.sampled_from([b"", b"", b" \r\n", b"From someone Mon Jan 1\n", b"\n"]))
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 4)) == 0:
            out += draw(st.sampled_from([b" folded", b"\tmore", b"no colon", b":"]))
        else:
            out += draw(_HEADER_NAMES).encode() + b":" + draw(_VALUE)
        out += draw(_ENDING)
    return out + draw(st.sampled_from([b"\r\n", b"\n", b""])) + draw(st.binary(max_size=40))


@given(_header_block())
@settings(max_examples=1500, deadline=None)
def test_the_parse_gives_odd_header_blocks_the_key_they_get_alone(raw: bytes) -> None:
    assert parse_keyed(raw)[1:] == dedupe_key(raw)
