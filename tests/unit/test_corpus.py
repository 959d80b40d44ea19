"""Parse and classify every message of the shared real-mail corpus against its expectations.

The corpus (``../shared/corpus`` from the repository root) holds 503 messages from other
projects' test suites; ``expected.jsonl`` was derived with Python's ``email`` package plus
hand corrections. Where we are convinced an expectation is wrong, the file is listed below
with the reason and runs as a strict xfail, so a change in either side is noticed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from helpdesk.filenames import clean_filename
from mailgate.classify import classify
from mailgate.parse import NO_SUBJECT, looks_like_mail, parse_message

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
EXPECTED = CORPUS / "expected.jsonl"
IN_CI = os.environ.get("CI") == "true"
GENERATED_NAME = re.compile(r"attachment-\d+\.\w+")

# Parsing: files where the expectation (stdlib email, policy.default) is worse than our result.
PARSE_EXPECTATION_WRONG = {
    "mail-parser/mail_test_9.eml": (
        "expected subject has U+FFFD where one GB2312 character is split across two adjacent"
        " encoded words; joining the words' bytes before decoding (as we do) gives the real"
        " character"
    ),
    "ruby-mail/attachment_emails__attachment_with_base64_encoded_name.eml": (
        "expects no attachment, but the PDF is named by an unquoted RFC 2047 word"
        " (filename==?utf-8?B?...?=) that we decode to 'This is a test.pdf'"
    ),
    "ruby-mail/attachment_emails__attachment_with_unquoted_name.eml": (
        "expects 'This' for the unquoted name 'This is a test.txt'; we keep the whole name"
    ),
    "ruby-mail/mime_emails__raw_email_with_binary_encoded.eml": (
        "expects no attachment because policy.default loses the unquoted boundary containing"
        " '='; compat32 parses it and finds the named JPEG"
    ),
    "ruby-mail/error_emails__content_transfer_encoding_7-bit.eml": (
        "expected phrase keeps mojibake ('DISCOVERÃ\\x86'): the body is UTF-8 labelled"
        " iso-8859-1, which we read as UTF-8 and give 'DISCOVERÆ'"
    ),
    # Issue 20: raw 8-bit headers are read in a declared or detected charset, and a broken
    # header block is recovered, where the expectation (stdlib email) has U+FFFD or nothing.
    "rt/emails__russian-subject-no-content-type.eml": (
        "expected subject is U+FFFD: the raw Subject bytes carry no label; read as KOI8-R"
        " (as the body is) they are 'тест тест', which is what we give"
    ),
    "ruby-mail/error_emails__invalid_subject_characters.eml": (
        "expected subject has U+FFFD for raw Latin-1 bytes; we read them as Windows-1252:"
        " 'Formação FrenetikPolis: ... Verão'"
    ),
    "ruby-mail/rfc2822__example13.eml": (
        "expected as headerless, but it is RFC 2822 A.6.3 (obsolete syntax: blanks before"
        " the colon, an unindented continuation), which readers must accept: mail from"
        " jdoe@machine.example, subject 'Saying Hello', and the To is no body text"
    ),
    "flanker/spam__broken-headers.eml": (
        "expected subject ends in U+FFFD for the raw byte 0x85, which Windows-1252 (the"
        " superset of the declared ISO-8859-1) reads as '\u2026'"
    ),
    "django-mailbox/message_with_single_byte_extended_subject_encoding.eml": (
        "expected subject is U+FFFD for raw 8-bit bytes; they are Windows-1251 (detected):"
        " 'Узнай как зарабатывать от 1000$ в неделю!'"
    ),
    "ruby-mail/plain_emails__mix_caps_content_type.eml": (
        "'From: Big Bug bb@bug.com' (no angle brackets) is expected as the address"
        " '\"big bug bb\"@bug.com'; the mailbox is bb@bug.com"
    ),
}

# Classification: files whose expected kind we think is wrong (all of them still get no
# auto-response; the first three get no ticket either way).
CLASSIFY_EXPECTATION_WRONG = {
    "sisimai/lhost-fml-02.eml": (
        "expected bounce, but it is an fml list server's 'you are not a member' notice with"
        " Mailing-List/List-Subscribe headers, not a delivery report: we say list"
    ),
    "bounceparser/warning-5.eml": (
        "expected auto_reply, but with From: <> and the text 'That's not a valid user here'"
        " it is a non-delivery notice: we say bounce"
    ),
    "flanker/disposition-notification.eml": (
        "expected mail, but it is a multipart/report disposition-notification (read receipt),"
        " machine-made; a ticket for it, or an answer to it, would be wrong: we say auto_reply"
    ),
    "flufl.bounce/simple_20.eml": (
        "expected bounce, but nothing marks it as machine-made (personal From, 'RE:' subject,"
        " no Auto-Submitted, no null Return-Path, no returned message); matching its words"
        " would also drop customer mail like 'Re: delivery failed - parcel could not be"
        " delivered to me': we say mail"
    ),
}


def _rows() -> list[dict[str, Any]]:
    if not EXPECTED.is_file():
        return []
    lines = EXPECTED.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


ROWS = _rows()


def _params(kinds: set[str] | None, wrong: dict[str, str]) -> list[Any]:
    if not ROWS:
        return [pytest.param(None, id="corpus-missing")]
    params = []
    for row in ROWS:
        if kinds is not None and row["kind"] not in kinds:
            continue
        reason = wrong.get(row["file"])
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(row, id=row["file"], marks=marks))
    return params


def _read(row: dict[str, Any] | None) -> bytes:
    if row is None:
        message = f"shared corpus not found at {CORPUS}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return (CORPUS / row["file"]).read_bytes()


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _named(names: list[str]) -> list[str]:
    """Names to compare: made safe, without the ones generated for unnamed parts."""
    safe = [clean_filename(n, i) for i, n in enumerate(names, 1)]
    return sorted(n for n in safe if not GENERATED_NAME.fullmatch(n))


def test_corpus_is_complete() -> None:
    _read(ROWS[0] if ROWS else None)
    assert len(ROWS) == 503
    assert all((CORPUS / row["file"]).is_file() for row in ROWS)


@pytest.mark.parametrize("row", _params(None, {}))
def test_corpus_message_parses_and_classifies_without_raising(row: dict[str, Any] | None) -> None:
    raw = _read(row)

    assert looks_like_mail(raw)
    msg = parse_message(raw)
    result = classify(msg, instance_id="corpus-test")

    assert msg.subject
    assert result.kind in ("mail", "auto_reply", "bounce", "list", "loop")


@pytest.mark.parametrize("row", _params({"mail", "malformed"}, PARSE_EXPECTATION_WRONG))
def test_corpus_mail_keeps_sender_subject_body_and_attachments(
    row: dict[str, Any] | None,
) -> None:
    raw = _read(row)
    assert row is not None

    msg = parse_message(raw)

    assert (msg.sender.email if msg.sender else None) == row["from"]
    assert msg.subject == (row["subject"] or NO_SUBJECT)
    if row["body_contains"]:
        phrase = _squash(row["body_contains"])
        assert phrase in _squash(msg.text) or phrase in _squash(msg.visible_text)
    assert _named([a.filename for a in msg.attachments]) == _named(row.get("attachments", []))


@pytest.mark.parametrize(
    "row", _params({"mail", "auto_reply", "bounce", "list"}, CLASSIFY_EXPECTATION_WRONG)
)
def test_corpus_message_is_classified_as_its_kind(row: dict[str, Any] | None) -> None:
    raw = _read(row)
    assert row is not None

    result = classify(parse_message(raw), instance_id="corpus-test")

    assert result.kind == row["kind"], result.reason
    assert result.makes_ticket == (row["kind"] == "mail")
