"""Text becomes a header value once, safely: sanitised, encoded by us, folded, parsed back as is."""

from __future__ import annotations

import email
import email.policy
import unicodedata
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpdesk import mailheaders as mh
from tests.unit.hostile import HOSTILE, nested

SEPARATORS = "\r\n\x00\t\x0b\x0c\x1c\x1d\x1e\x1f\x7f\x85\u2028\u2029\x1b\xa0\u3000"


def parse_header(name: str, value: str) -> EmailMessage:
    """The header block ``Name: value`` as a receiver parses it (policy.default)."""
    raw = f"{name}: {value}\r\n\r\nbody\r\n".encode("ascii")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_wire_safe(name: str, value: str) -> None:
    """ASCII, no control characters but our folds, lines of at most 78 characters."""
    assert value.isascii()
    lines = f"{name}: {value}".split("\r\n")
    for i, line in enumerate(lines):
        assert line.isprintable(), line
        assert len(line) <= mh.LINE, line
        assert i == 0 or line.startswith(" ")
        assert i == 0 or line.strip()  # no whitespace-only line


@given(HOSTILE)
@example("a\r\nBcc: x\u2028y\x85z\x00")
def test_header_text_is_one_clean_line_and_keeps_every_other_character(text: str) -> None:
    clean = mh.header_text(text)
    assert mh.header_text(clean) == clean
    assert clean == clean.strip() and "  " not in clean
    for ch in clean:
        assert ch == " " or not ch.isspace()
        assert unicodedata.category(ch) not in {"Cc", "Zl", "Zp", "Cs"}
    kept = [("\ufffd" if unicodedata.category(c) == "Cs" else c) for c in text
            if not (c.isspace() or unicodedata.category(c) in {"Cc", "Zl", "Zp"})]
    assert clean.replace(" ", "") == "".join(kept)


@pytest.mark.parametrize("char", list(SEPARATORS))
def test_every_separator_and_control_character_becomes_a_space(char: str) -> None:
    assert mh.header_text(f"a{char}b") == "a b"


@given(HOSTILE, st.sampled_from(["Subject", "X-Helpdesk-Ticket", "X-Auto-Response-Suppress"]))
@example("=?utf-8?q?x=0D=0ABcc:_y@z?=", "Subject")
@example(nested("=?utf-8?q?x=0D=0ABcc:_y@z?="), "Subject")
@settings(max_examples=400)
def test_unstructured_values_parse_back_to_the_sanitised_text(text: str, name: str) -> None:
    value = mh.unstructured(name, text)
    assert_wire_safe(name, value)
    msg = parse_header(name, value)
    assert list(msg.keys()) == [name]
    assert str(msg[name]) == mh.header_text(text)
    assert msg.get_content() == "body\r\n"


def test_a_literal_encoded_word_is_encoded_so_it_is_decoded_once_to_itself() -> None:
    value = mh.unstructured("Subject", "[TKT-000001] =?utf-8?q?x=0D=0ABcc:_y@z?=")
    assert value.startswith("[TKT-000001] =?utf-8?q?=3D=3Futf-8")
    assert str(parse_header("Subject", value)["Subject"]) == \
        "[TKT-000001] =?utf-8?q?x=0D=0ABcc:_y@z?="


def test_plain_ascii_stays_readable() -> None:
    assert mh.unstructured("Subject", "[TKT-000042] Printer  on\tfire ") == \
        "[TKT-000042] Printer on fire"
    assert mh.mailbox("From", "Helpdesk", "support@example.com") == \
        "Helpdesk <support@example.com>"
    assert mh.mailbox("From", 'Acme "Support" (EU)', "support@example.com") == \
        '"Acme \\"Support\\" (EU)" <support@example.com>'


@given(HOSTILE, st.sampled_from(["support@support.example.com", "a.b+t42.x@z",
                                 "o'hara@example.org"]))
@example("Al\r\nBcc: evil@example.org", "a@example.org")
@example('J. "Q" Smith, <x@y>', "a@example.org")
@example("Acme =?x?= (EU)", "a@example.org")
@example("Acme \\ (EU)", "a@example.org")
@settings(max_examples=300)
def test_mailboxes_parse_back_to_one_address_with_the_sanitised_name(display: str,
                                                                     addr: str) -> None:
    value = mh.mailbox("From", display, addr)
    assert_wire_safe("From", value)
    msg = parse_header("From", value)
    assert list(msg.keys()) == ["From"]
    [parsed] = msg["From"].addresses
    assert parsed.addr_spec == addr
    wanted = mh.header_text(display)
    phrase = value.replace("\r\n", "").rpartition(" <")[0]
    if phrase.startswith('"'):  # a quoted string: printable ASCII, nothing encoded
        assert "=?" not in phrase and parsed.display_name == wanted
    else:
        assert str(make_header(decode_header(phrase))) == wanted  # RFC 2047 6.2
    # policy.default puts a space between adjacent encoded words in a phrase (RFC 2047
    # says to ignore the whitespace there), so only the other characters must agree.
    assert parsed.display_name.replace(" ", "") == wanted.replace(" ", "")
    if phrase.count("=?") <= 1:
        assert parsed.display_name == wanted


@given(st.lists(st.sampled_from(["alice@example.org", "b.o.b@support.example.com",
                                 "x+t1.abc@z"]), min_size=1, max_size=12))
def test_address_lists_fold_after_commas_and_parse_back(addrs: list[str]) -> None:
    value = mh.address_list("To", addrs)
    assert_wire_safe("To", value)
    assert [a.addr_spec for a in parse_header("To", value)["To"].addresses] == addrs


@pytest.mark.parametrize("bad", [
    "", "alice", "alice@", "@example.org", "a b@example.org", "alice@exa mple.org",
    "alice@example.org\r\nBcc: x@y", "_evil@example.org?=", "alice@-example.org",
    '"quoted"@example.org', "alice@[127.0.0.1]", "álice@example.org", "alice@exä mple.org",
    "alice@exämple.org\r\nBcc: x", "alice@\u2028.org", "álice@exämple.org",
    "a@b@c", "alice@example.org>", "<alice@example.org>", "x" * 65 + "@example.org",
    "alice@" + "a" * 250 + ".org", "alice@example.org\x00", "a..b@example.org",
])
def test_addresses_we_do_not_write_are_refused(bad: str) -> None:
    assert mh.address(bad) is None
    with pytest.raises(ValueError):
        mh.mailbox("To", "", bad)


@pytest.mark.parametrize("good", [
    "alice@example.org", "o'hara+tag@mail.example.co.uk", "x@z", "A.B-C_d=e?f@x1-2.org"])
def test_ordinary_addresses_are_kept(good: str) -> None:
    assert mh.address(f" {good} ") == good


def test_an_internationalised_domain_is_written_in_idna_form() -> None:
    assert mh.address("hans@müller.example") == "hans@xn--mller-kva.example"
    assert mh.address_list("To", ["hans@müller.example"]) == "hans@xn--mller-kva.example"


@pytest.mark.parametrize("bad", [
    None, "", "alice-1@example.org", "<alice-1@example.org", "<a b@example.org>",
    "<a@b@c>", "<a@=?utf-8?q?b=0D=0ABcc:_c?=>", "<=?utf-8?q?b=0D=0ABcc:_c?=@example.org>",
    "<a\r\n@b>", "<a@b>\r\nBcc: x@y", "<a@b\x00>", "<a@b\u2028>", "<@example.org>",
    "<a@>", "<a@b> <c@d>", "<" + "x" * 250 + "@example.org>", "<a.@b>", "<a@[b[c]>",
    "<é@example.org>", "<a@b.>",
])
def test_msg_ids_that_are_not_rfc5322_are_dropped(bad: str | None) -> None:
    assert mh.msg_id(bad) is None


@pytest.mark.parametrize("good", [
    "<alice-1@example.org>", "<CAH+x=Yz9_w@mail.gmail.com>", "<a.b.c@[127.0.0.1]>",
    "<hd.42.abc123.aaaaaaaaaa@support.example.com>", "<{x}|~#$%&'*/^`@host>"])
def test_rfc5322_msg_ids_are_kept(good: str) -> None:
    assert mh.msg_id(f" {good}\t") == good


@given(st.lists(st.one_of(HOSTILE, st.sampled_from([
    "<alice-1@example.org>", "<" + "y" * 120 + "@example.org>", "<a@[1.2.3.4]>"])),
    max_size=20))
def test_reference_lists_keep_only_msg_ids_and_parse_back(ids: list[str]) -> None:
    value = mh.msg_id_list("References", ids)
    wanted = [i.strip() for i in ids if mh.msg_id(i) is not None]
    assert value.isascii() and all(line.isprintable() for line in value.split("\r\n"))
    for line in f"References: {value}".split("\r\n"):  # a long id only alone on its line
        assert len(line) <= mh.LINE or " " not in line.removeprefix("References:").strip()
    assert str(parse_header("References", value)["References"]).split() == wanted


@given(HOSTILE)
@example("report.pdf")
@example("=?utf-8?q?x=0D=0ABcc:_y@z?=.pdf")
@example('a "b" \\c.txt')
def test_attachment_file_names_parse_back_to_the_sanitised_name(name: str) -> None:
    value = mh.attachment_disposition(name)
    assert_wire_safe("Content-Disposition", value)
    msg = parse_header("Content-Disposition", value)
    # .params, not get_filename(): the legacy API strips quotes and <> around any name
    assert msg["Content-Disposition"].params["filename"] == (mh.header_text(name)
                                                            or "attachment")


@pytest.mark.parametrize(("value", "expected"), [
    ("application/pdf", ("application", "pdf")), ("Text/Plain", ("text", "plain")),
    ("multipart/mixed", ("application", "octet-stream")), ("text", ("application",
                                                                    "octet-stream")),
    ("text/plain\r\nBcc: x", ("application", "octet-stream")),
    ("text/=?utf-8?q?a?=", ("application", "octet-stream")),
])
def test_mime_types_are_tokens_or_octet_stream(value: str, expected: tuple[str, str]) -> None:
    assert mh.mime_type(value) == expected
