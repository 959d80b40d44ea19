"""Issue 20: every mail a customer can send is read as a mail client reads it.

Each test parses a crafted mail from ``tests/data/mail/`` (one per case of the issue, plus
variants): every text leaf of a mixed mail is content, declared charsets are read through
their supersets, unlabelled bytes through UTF-8, the declared charsets and a detector,
broken header blocks are recovered, and an address is never cut down to another one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate import _charsets, _headblock
from mailgate.parse import Inbound, parse_keyed, parse_message

MAIL = Path(__file__).resolve().parents[1] / "data" / "mail"


def parse_file(name: str) -> Inbound:
    return parse_message((MAIL / name).read_bytes())


# --- 1. every text-bearing leaf is content ----------------------------------------------


def test_mixed_html_then_text_keeps_the_html_message_and_the_text_footer() -> None:
    msg = parse_file("parse-mixed-html-then-text.eml")

    assert msg.text == "The printer on floor 3 jams on every page.\n--\nAna Lima, Accounts"
    assert msg.html is not None
    assert msg.html.index("<b>floor 3</b>") < msg.html.index("Ana Lima, Accounts")
    assert msg.attachments == ()


def test_mixed_keeps_alternative_text_and_html_leaves_in_order() -> None:
    msg = parse_file("parse-mixed-alternative-image-text.eml")

    # the alternative gives one content (its text version, not the HTML's text twice)
    assert msg.text.split("\n") == [
        "The error appears when I log in.",
        "It started after the update <yesterday> & still happens.",
        "Ana Lima | Accounts",
    ]
    assert msg.html is not None
    html = msg.html
    assert html.count("log in") == 1
    # the text leaf is escaped HTML between the HTML leaves, in its place
    assert (html.index("<i>log in</i>") < html.index("&lt;yesterday&gt; &amp; still")
            < html.index("<b>Ana Lima</b>"))
    assert [a.content_type for a in msg.attachments] == ["image/png"]


def test_alternative_alone_still_chooses_one_version() -> None:
    raw = (b"From: a@example.org\nSubject: alt\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/alternative; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\nplain words\n"
           b"--b\nContent-Type: text/html\n\n<p>html words</p>\n--b--\n")
    msg = parse_message(raw)

    assert msg.text == "plain words"
    assert msg.html == "<p>html words</p>"


def test_an_alternative_whose_rich_version_is_mixed_keeps_all_of_that_version() -> None:
    raw = (b"From: a@example.org\nSubject: alt\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/alternative; boundary=a\n\n"
           b"--a\nContent-Type: text/plain\n\nwhole text version\n"
           b"--a\nContent-Type: multipart/mixed; boundary=m\n\n"
           b"--m\nContent-Type: text/html\n\n<p>first html</p>\n"
           b"--m\nContent-Type: text/plain\n\nplain footer\n"
           b"--m\nContent-Type: text/html\n\n<p>second html</p>\n--m--\n--a--\n")
    msg = parse_message(raw)

    assert msg.text == "whole text version"  # the text version, not the HTML's text too
    assert msg.html == "<p>first html</p><div>plain footer</div><p>second html</p>"
    assert msg.attachments == ()


# --- 2. charsets through their supersets, unlabelled bytes read before U+FFFD ----------


def test_iso_2022_jp_with_windows_extension_rows_is_decoded() -> None:
    msg = parse_file("parse-iso2022jp-extensions.eml")

    assert msg.subject == "手順①について"
    assert msg.text == "手順は①から③まで、Ⅱ章をご覧ください。髙橋より\n"
    assert "\x1b" not in msg.text and "$B" not in msg.text


def test_unlabelled_iso_2022_jp_is_found_by_its_escape_sequences() -> None:
    msg = parse_file("parse-iso2022jp-unlabelled.eml")

    assert msg.text == "お問い合わせありがとうございます。\n田中\n"


def test_gb2312_reads_as_gb18030_and_latin1_as_windows_1252() -> None:
    msg = parse_file("parse-charset-supersets.eml")

    assert msg.subject == "朱镕基的发票"  # 镕 is GBK, not GB2312
    assert "请查看朱镕基的发票。" in msg.text
    assert "It costs 20 € – “quoted” – thanks." in msg.text
    assert "\ufffd" not in msg.text


def test_unlabelled_8bit_bodies_are_utf8_with_stray_latin1_or_detected() -> None:
    msg = parse_file("parse-8bit-body-unlabelled.eml")

    assert msg.text.split("\n") == [
        "Here it goes - äöü - 差出人 - äöü",
        "Добрый день! Подскажите, пожалуйста, цену.",
    ]


@pytest.mark.parametrize(("label", "data", "expected"), [
    ("iso-8859-1", b"\x93x\x94 \x80", "\u201cx\u201d \u20ac"),  # Windows-1252
    ("us-ascii", b"\x80", "\u20ac"),
    ("iso-8859-9", b"\x80", "\u20ac"),  # Windows-1254
    ("tis-620", b"\x80", "\u20ac"),  # Windows-874
    ("gb2312", "镕".encode("gbk"), "镕"),  # GB18030
    ("shift_jis", b"\x87\x40", "\u2460"),  # CP932: NEC row 13
    ("euc-kr", "똠".encode("cp949"), "똠"),  # CP949
    ("big5", b"\xa3\xe1", "\u20ac"),  # CP950
])
def test_a_label_is_read_through_its_superset(label: str, data: bytes, expected: str) -> None:
    assert _charsets.decode_bytes(data, label) == expected


def test_a_cut_utf8_character_is_a_replacement_not_latin1() -> None:
    text = "Картинка".encode()[:-1] + b'"'
    assert _charsets.decode_bytes(text, None) == "Картинк\ufffd\""


# --- raw 8-bit headers and filenames --------------------------------------------------


def test_raw_8bit_headers_and_filename_are_read_in_the_declared_charset() -> None:
    msg = parse_file("parse-8bit-headers-declared.eml")

    assert msg.sender is not None and msg.sender.name == "武兰成"
    assert msg.subject == "转发：整体提升企业服务水平"
    assert [a.filename for a in msg.attachments] == ["绩效管理.xls"]
    assert msg.headers["subject"] == "转发：整体提升企业服务水平"


def test_raw_8bit_filenames_in_latin1_utf8_and_rfc2231_are_decoded() -> None:
    msg = parse_file("parse-8bit-filenames.eml")

    assert [a.filename for a in msg.attachments] == [
        "Hofjägeralle Wasserschaden.jpg", "Bestellbestätigung.pdf", "Platte ohne Wölbung.jpg"]


def test_plain_shift_jis_in_a_raw_subject_and_a_mislabelled_word_is_read() -> None:
    msg = parse_file("parse-8bit-shift-jis.eml")

    assert msg.subject == "ツール"
    assert msg.sender is not None and msg.sender.name == "ツール EXAMPLE"
    assert msg.text == "本文です。\n"


# --- 3. header blocks recovered as clients recover them -----------------------------------


def test_a_stray_line_before_the_headers_is_skipped() -> None:
    raw = (MAIL / "parse-header-stray-line.eml").read_bytes()
    msg, key, _ = parse_keyed(raw)

    assert msg.sender is not None and msg.sender.email == "carla@example.cz"
    assert msg.subject == "Contact from Server"
    assert msg.date is not None
    assert msg.text == "Dobrý den, garáž není jeho.\n"
    assert "header block repaired" in msg.defects
    assert raw.startswith(b"---- Original email message ----")  # raw untouched
    assert key


def test_unindented_lines_inside_the_header_block_are_continuations() -> None:
    msg = parse_file("parse-header-unindented-continuation.eml")

    assert msg.sender is not None and msg.sender.email == "karoline.smith@example.com"
    assert msg.sender.name == "Smith, Karoline"
    assert msg.subject == "Besprechung über das Angebot"
    assert msg.message_id == "<unindented@example.com>"
    assert msg.date is not None
    assert msg.text == "some text\n"


def test_obsolete_blanks_before_the_colon_still_name_a_header() -> None:
    msg = parse_message(b"From : Jane <jane@example.org>\nSubject   : Hello\n"
                        b"Date  : Fri, 21 Nov 1997 09:55:06 -0600\n\nbody\n")

    assert msg.sender is not None and msg.sender.email == "jane@example.org"
    assert msg.subject == "Hello"
    assert msg.text == "body\n"


def test_a_date_with_a_header_glued_to_it_keeps_its_date() -> None:
    msg = parse_message(b"From: +123@example.com\nDate: Fri, 07 Apr 2023 17:30:44 +0200"
                        b"Received: from m241.example.com\n\tby in45.mail.example.com\n"
                        b"Subject: test\n\nsome text\n")

    assert msg.date is not None and msg.date.isoformat() == "2023-04-07T15:30:44+00:00"
    assert msg.subject == "test"


def test_a_body_without_its_blank_line_is_not_made_a_header() -> None:
    raw = b"From: a@example.org\nSubject: x\nRegards,\nJohn\nPhone: 123\n"
    assert _headblock.recover(raw) is None
    assert parse_message(raw).subject == "x"


def test_text_without_headers_is_not_read_as_a_header_block() -> None:
    raw = b"Dear team,\nwe have a problem.\nNote: see below\n\nThanks\n"
    msg = parse_message(raw)

    assert msg.text.startswith("Dear team,")
    assert msg.subject == "(no subject)"


def test_a_header_block_that_needs_no_repair_is_not_copied() -> None:
    assert _headblock.recover(b"From: a@example.org\nSubject: x\n  folded\n\nbody\n") is None


# --- 4. addresses ---------------------------------------------------------------------


def test_an_address_that_is_no_mailbox_falls_back_and_keeps_the_quoted_name() -> None:
    msg = parse_file("parse-from-no-mailbox.eml")

    assert msg.sender is not None
    assert msg.sender.email == "past@example.net"  # never system@example.com
    assert msg.sender.name == "your secret past"
    assert msg.sender_text == '"your secret past" <power quadrant system@example.com>'


def test_an_address_that_is_no_mailbox_without_fallback_is_no_address() -> None:
    msg = parse_message(b'From: "your secret past" <power quadrant system@example.com>\n'
                        b"Subject: s\n\nx\n")

    assert msg.sender is not None
    assert (msg.sender.email, msg.sender.name) == ("", "your secret past")
    assert "power quadrant system@example.com" in msg.sender_text


def test_a_display_name_without_brackets_is_a_name_and_its_address() -> None:
    msg = parse_message(b"From: Test test@example.com\nSubject: s\n\nx\n")

    assert msg.sender is not None
    assert (msg.sender.email, msg.sender.name) == ("test@example.com", "Test")


def test_among_two_from_headers_the_one_with_an_address_wins() -> None:
    msg = parse_file("parse-two-from.eml")

    assert msg.sender is not None
    assert (msg.sender.email, msg.sender.name) == ("ghgbwum@example.cn", "都琹")


def test_an_encoded_line_break_in_a_display_name_cannot_change_the_sender() -> None:
    msg = parse_file("parse-from-encoded-crlf.eml")

    assert msg.sender is not None
    assert msg.sender.email == "alice@example.org"
    assert msg.sender.name == "Al Bcc: evil@example.org"
    assert msg.subject == "hello Bcc: evil@example.org"
    assert not any(c in msg.sender.name + msg.subject for c in "\r\n")


def test_an_encoded_word_with_a_comma_is_one_display_name() -> None:
    msg = parse_message(b"From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>\n"
                        b"To: =?utf-8?q?a,_b?= <x@example.org>, y@example.org\n\nx\n")

    assert msg.sender is not None and msg.sender.name == "Bürling, Andreas"
    assert [(a.name, a.email) for a in msg.to] == [("a, b", "x@example.org"),
                                                  ("", "y@example.org")]


def test_an_encoded_word_inside_an_address_is_never_decoded() -> None:
    msg = parse_message(b"From: =?utf-8?Q?agent?=@example.com\nSubject: s\n\nx\n")

    assert msg.sender is not None and msg.sender.email == "=?utf-8?q?agent?=@example.com"


def test_a_null_from_stays_no_sender() -> None:
    msg = parse_message(b'From: "=?GB2312?B?ztI=?=" <>\nReply-To: r@example.net\n'
                        b"Subject: s\n\nx\n")

    assert msg.sender is None
