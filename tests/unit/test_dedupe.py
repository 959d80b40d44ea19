"""The idempotency key: same mail by any transport is one key; different mail never is."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailgate import _dedupe
from mailgate.ingest import dedupe_key

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
