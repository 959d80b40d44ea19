"""Large base64 bodies kept out of the MIME parser (`mailgate._bigparts`) give the same mail.

Each test compares against the standard library: either ``email`` itself, or
``parse_message`` with lightening switched off (``LIGHTEN_ABOVE`` out of reach), which is
exactly the parse the module must not change.
"""

from __future__ import annotations

import base64
import email
import gc
import hashlib
import os
import random
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.storage import BlobStore
from mailgate import _bigparts
from mailgate.parse import Inbound, parse_message

EOLS = pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
NEVER = 1 << 62


@contextmanager
def thresholds(*, lighten: int | None = None, elide: int | None = None,
               chunk: int | None = None) -> Iterator[None]:
    """Set the module's size thresholds for a block (hypothesis cannot use monkeypatch)."""
    saved = (_bigparts.LIGHTEN_ABOVE, _bigparts.ELIDE_AT_LEAST, _bigparts._CHUNK)
    try:
        if lighten is not None:
            _bigparts.LIGHTEN_ABOVE = lighten
        if elide is not None:
            _bigparts.ELIDE_AT_LEAST = elide
        if chunk is not None:
            _bigparts._CHUNK = chunk
        yield
    finally:
        _bigparts.LIGHTEN_ABOVE, _bigparts.ELIDE_AT_LEAST, _bigparts._CHUNK = saved


def parse_plain(raw: bytes, **limits: int) -> Inbound:
    """The parse without lightening: what the standard library alone gives."""
    with thresholds(lighten=NEVER):
        return parse_message(raw, **limits)


def content(inbound: Inbound) -> list[tuple[str, str, bool, str | None, str]]:
    """Each attachment's metadata and the sha256 of its decoded bytes."""
    out = []
    for att in inbound.attachments:
        digest = hashlib.sha256()
        for chunk in att.chunks():
            digest.update(chunk)
        out.append((att.filename, att.content_type, att.is_inline, att.content_id,
                    digest.hexdigest()))
    return out


def assert_same(got: Inbound, want: Inbound) -> None:
    assert got.text == want.text
    assert got.visible_text == want.visible_text
    assert got.html == want.html
    assert got.subject == want.subject
    assert got.part_types == want.part_types
    assert got.content_type == want.content_type
    assert got.body_truncated == want.body_truncated
    assert got.defects == want.defects
    assert content(got) == content(want)
    assert "helpdesk-elided" not in got.text


def b64_lines(data: bytes, width: int = 76, eol: str = "\n", *, pad: bool = True) -> str:
    text = base64.b64encode(data).decode()
    if not pad:
        text = text.rstrip("=")
    return "".join(text[i:i + width] + eol for i in range(0, len(text), width))


def mixed(parts: list[str], eol: str = "\n", subject: str = "Big one") -> bytes:
    """A multipart/mixed mail from ready-made parts (headers + blank line + body)."""
    head = (f"From: Alice <alice@example.org>{eol}To: support@support.example.com{eol}"
            f"Subject: {subject}{eol}Message-ID: <big@example.org>{eol}MIME-Version: 1.0{eol}"
            f'Content-Type: multipart/mixed; boundary="XyZ"{eol}{eol}')
    body = "".join(f"--XyZ{eol}{part}" for part in parts) + f"--XyZ--{eol}"
    return (head + body).encode()


def text_part(body: str, eol: str = "\n") -> str:
    return (f"Content-Type: text/plain; charset=utf-8{eol}Content-Transfer-Encoding: 7bit{eol}"
            f"{eol}{body}")


def b64_part(data: bytes, eol: str = "\n", *, name: str = "report.bin",
             ctype: str = "application/octet-stream", disposition: str = "attachment",
             width: int = 76, cid: str | None = None) -> str:
    cid_line = f"Content-ID: <{cid}>{eol}" if cid else ""
    return (f"Content-Type: {ctype}; name=\"{name}\"{eol}"
            f"Content-Disposition: {disposition}; filename=\"{name}\"{eol}{cid_line}"
            f"Content-Transfer-Encoding: base64{eol}{eol}{b64_lines(data, width, eol)}")


@pytest.fixture(scope="module")
def blob3() -> bytes:
    return random.Random(3).randbytes(3_000_000)


# -- large attachments ---------------------------------------------------------------------


@EOLS
def test_3mb_attachment_parses_as_the_stdlib_does_and_is_kept_out_of_payload(
        eol: str, blob3: bytes) -> None:
    raw = mixed([text_part(f"Please see the file.{eol}", eol), b64_part(blob3, eol)], eol)
    assert len(raw) > _bigparts.LIGHTEN_ABOVE
    got = parse_message(raw)
    assert_same(got, parse_plain(raw))
    assert got.text == "Please see the file."  # the last line end belongs to the boundary
    [att] = got.attachments
    assert (att.filename, att.content_type, att.is_inline) == (
        "report.bin", "application/octet-stream", False)
    assert att.payload == b"" and att.large is not None
    assert b"".join(att.chunks()) == blob3
    stdlib = email.message_from_bytes(raw, policy=compat32)
    assert stdlib.get_payload()[1].get_payload(decode=True) == blob3


@EOLS
def test_inline_image_with_content_id_keeps_its_inline_flag_and_cid(eol: str,
                                                                    blob3: bytes) -> None:
    raw = mixed([text_part(f"Screenshot below.{eol}", eol),
                 b64_part(blob3, eol, name="shot.png", ctype="image/png",
                          disposition="inline", cid="shot1@example.org")], eol)
    got = parse_message(raw)
    assert_same(got, parse_plain(raw))
    [att] = got.attachments
    assert (att.filename, att.content_type, att.is_inline, att.content_id) == (
        "shot.png", "image/png", True, "shot1@example.org")
    assert att.large is not None and b"".join(att.chunks()) == blob3


@pytest.mark.slow
def test_25mb_attachment_parses_as_the_stdlib_does() -> None:
    blob = random.Random(25).randbytes(25_000_000)
    raw = mixed([text_part("Here is the dump.\r\n", "\r\n"),
                 b64_part(blob, "\r\n", name="dump.tar")], "\r\n")
    got = parse_message(raw)
    [att] = got.attachments
    assert att.payload == b"" and att.large is not None
    assert att.large.decoded_size() >= len(blob)
    assert hashlib.sha256(b"".join(att.chunks())).digest() == hashlib.sha256(blob).digest()
    want = parse_plain(raw)
    assert_same(got, want)
    assert want.attachments[0].payload == blob


def test_small_attachments_are_unchanged_bytes_beside_a_large_one(blob3: bytes) -> None:
    small = os.urandom(5000)
    raw = mixed([text_part("Two files.\n"), b64_part(small, name="small.bin"),
                 b64_part(blob3, name="big.bin")])
    got = parse_message(raw)
    assert_same(got, parse_plain(raw))
    by_name = {a.filename: a for a in got.attachments}
    assert by_name["small.bin"].payload == small and by_name["small.bin"].large is None
    assert list(by_name["small.bin"].chunks()) == [small]
    assert by_name["big.bin"].payload == b"" and by_name["big.bin"].large is not None


def test_a_message_under_the_threshold_is_not_touched() -> None:
    blob = os.urandom(300_000)  # a run above ELIDE_AT_LEAST, a message below LIGHTEN_ABOVE
    raw = mixed([text_part("Small enough.\n"), b64_part(blob)])
    assert len(raw) < _bigparts.LIGHTEN_ABOVE
    assert _bigparts.lighten(raw) == (raw, {})
    [att] = parse_message(raw).attachments
    assert att.payload == blob and att.large is None


def test_an_attachment_over_max_attachment_bytes_is_dropped_with_a_defect(blob3: bytes) -> None:
    raw = mixed([text_part("Too big.\n"), b64_part(blob3, name="huge.bin")])
    got = parse_message(raw, max_attachment_bytes=2_000_000)
    assert got.attachments == ()
    assert any(d.startswith("attachment too large: huge.bin") for d in got.defects)
    assert got.text == "Too big."
    want = parse_plain(raw, max_attachment_bytes=2_000_000)
    assert want.attachments == () and any("huge.bin" in d for d in want.defects)


def test_an_attachment_under_max_attachment_bytes_is_kept(blob3: bytes) -> None:
    raw = mixed([text_part("Fits.\n"), b64_part(blob3, name="fits.bin")])
    [att] = parse_message(raw, max_attachment_bytes=3_100_000).attachments
    assert b"".join(att.chunks()) == blob3


def test_attachments_beyond_the_message_total_are_dropped(blob3: bytes) -> None:
    raw = mixed([b64_part(blob3, name="one.bin"), b64_part(blob3[::-1], name="two.bin")])
    got = parse_message(raw, max_total_attachment_bytes=4_000_000)
    assert [a.filename for a in got.attachments] == ["one.bin"]
    assert any(d.startswith("attachment over message total: two.bin") for d in got.defects)


# -- runs of base64-looking lines that are not base64 bodies -------------------------------


@EOLS
def test_base64_looking_lines_in_a_7bit_text_part_come_back_intact(eol: str,
                                                                    blob3: bytes) -> None:
    words = "abcdefgh" + eol
    body = f"Inventory follows:{eol}" + words * 20_000 + f"End of list.{eol}"
    raw = mixed([text_part(body, eol), b64_part(blob3, eol)], eol)
    got = parse_message(raw)
    assert got.text == "Inventory follows:\n" + "abcdefgh\n" * 20_000 + "End of list."
    assert_same(got, parse_plain(raw))
    assert got.attachments[0].large is not None


@EOLS
def test_base64_looking_text_in_a_single_part_mail_comes_back_intact(
        eol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bigparts, "LIGHTEN_ABOVE", 1000)
    head = f"From: a@example.org{eol}To: b@example.com{eol}Subject: list{eol}{eol}"
    raw = (head + ("abcdefgh" + eol) * 20_000).encode()
    light, elided = _bigparts.lighten(raw)
    assert elided and len(light) < 1000  # the run really was taken out
    got = parse_message(raw)
    assert got.text == "abcdefgh\n" * 20_000
    assert_same(got, parse_plain(raw))


@EOLS
def test_base64_looking_lines_right_before_a_boundary_come_back_intact(
        eol: str, blob3: bytes) -> None:
    body = ("abcdefgh" + eol) * 20_000
    raw = mixed([text_part(body, eol), b64_part(blob3, eol)], eol)
    got = parse_message(raw)
    assert_same(got, parse_plain(raw))


@EOLS
def test_a_large_base64_text_body_is_decoded_into_text(eol: str) -> None:
    lines = [f"Line {i}: the printer on floor {i % 7} is on fire (ünïcödé)." for i in
             range(22_000)]
    body = "\n".join(lines) + "\n"
    encoded = b64_lines(body.encode("utf-8"), 76, eol)
    raw = (f"From: a@example.org{eol}To: support@support.example.com{eol}Subject: log{eol}"
           f"MIME-Version: 1.0{eol}Content-Type: text/plain; charset=utf-8{eol}"
           f"Content-Transfer-Encoding: base64{eol}{eol}{encoded}").encode()
    assert len(raw) > _bigparts.LIGHTEN_ABOVE
    _, elided = _bigparts.lighten(raw)
    assert len(elided) == 1
    got = parse_message(raw)
    assert got.text == body
    assert got.attachments == ()
    assert_same(got, parse_plain(raw))


# -- memory --------------------------------------------------------------------------------


@pytest.mark.slow
def test_parsing_and_storing_a_25mb_attachment_stays_small_in_memory(tmp_path: Path) -> None:
    blob = random.Random(7).randbytes(25_000_000)
    raw = mixed([text_part("Dump attached.\r\n", "\r\n"),
                 b64_part(blob, "\r\n", name="dump.bin")], "\r\n")
    want = hashlib.sha256(blob).hexdigest()
    del blob
    store = BlobStore(tmp_path / "blobs")
    gc.collect()
    tracemalloc.start()
    try:
        inbound = parse_message(raw)
        [att] = inbound.attachments
        sha, size = store.put_chunks(att.chunks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (sha, size) == (want, 25_000_000)
    assert hashlib.sha256(store.get(sha)).hexdigest() == want
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


# -- Elided.chunks decodes exactly the original bytes --------------------------------------


def _elided_over(text: str, eol: str) -> tuple[bytes, _bigparts.Elided]:
    head = f"Content-Transfer-Encoding: base64{eol}{eol}".encode()
    tail = f"--XyZ--{eol}".encode()
    raw = head + text.encode() + tail
    return raw, _bigparts.Elided(raw, len(head), len(head) + len(text))


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=5000),
       width=st.sampled_from([4, 60, 64, 72, 73, 76, 998]) | st.integers(1, 200),
       pad=st.booleans(), eol=st.sampled_from(["\n", "\r\n"]),
       chunk=st.sampled_from([1, 3, 4, 5, 57, 76, 77, 1000, 1 << 20]))
def test_elided_chunks_decode_hand_built_base64_exactly(data: bytes, width: int, pad: bool,
                                                        eol: str, chunk: int) -> None:
    _, elided = _elided_over(b64_lines(data, width, eol, pad=pad), eol)
    with thresholds(chunk=chunk):
        assert b"".join(elided.chunks()) == data
        assert elided.decode() == data
    assert elided.decoded_size() >= len(data)
    assert elided.decoded_size() <= len(data) + 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=20_000),
       chunk=st.sampled_from([4, 7, 76, 1 << 20]),
       name=st.sampled_from(["a.bin", "b.pdf", "scan.png"]))
def test_email_package_attachments_decode_exactly_through_parse(data: bytes, chunk: int,
                                                                name: str) -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "support@support.example.com"
    msg["Subject"] = "files"
    msg.set_content("see attached\n")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    raw = msg.as_bytes()
    with thresholds(lighten=100, elide=64, chunk=chunk):
        got = parse_message(raw)
        [att] = got.attachments
        assert att.filename == name
        assert b"".join(att.chunks()) == data
        if len(data) >= 64:  # the body is one run of four or more lines of 76
            assert att.large is not None and att.payload == b""
    assert_same(got, parse_plain(raw))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=200, max_size=8000),
       width=st.sampled_from([60, 64, 73, 76]), pad=st.booleans(),
       eol=st.sampled_from(["\n", "\r\n"]), chunk=st.sampled_from([4, 9, 100, 1 << 20]))
def test_hand_built_attachments_with_odd_line_lengths_decode_exactly_through_parse(
        data: bytes, width: int, pad: bool, eol: str, chunk: int) -> None:
    part = (f"Content-Type: application/octet-stream{eol}"
            f"Content-Disposition: attachment; filename=\"odd.bin\"{eol}"
            f"Content-Transfer-Encoding: base64{eol}{eol}{b64_lines(data, width, eol, pad=pad)}")
    raw = mixed([text_part(f"odd lines{eol}", eol), part], eol)
    with thresholds(lighten=100, elide=64, chunk=chunk):
        got = parse_message(raw)
        [att] = got.attachments
        assert b"".join(att.chunks()) == data
    assert got.text == "odd lines"


def test_the_size_limit_counts_decoded_bytes_exactly(blob3: bytes) -> None:
    """The limit check of a lightened attachment agrees with the plain parse to the byte."""
    for size in (2_999_998, 2_999_999, 3_000_000):  # padding "==", "=" and none
        payload = blob3[:size]
        raw = mixed([text_part("see attached\n", "\n"), b64_part(payload, "\n")], "\n")
        kept = parse_message(raw, max_attachment_bytes=size)
        dropped = parse_message(raw, max_attachment_bytes=size - 1)
        assert [b"".join(a.chunks()) for a in kept.attachments] == [payload]
        assert not dropped.attachments
        assert any("too large" in d for d in dropped.defects)
